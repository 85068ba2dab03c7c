"""`/__sim/bounds`: the theoretical minimum time to fetch every event, from the config alone.

Pages of `max_limit`; unlimited parallelism (cursors can be forged at any point); the only limits
are the request budgets and one page's server latency. `theoretical_min_seconds` gives one path at a
time (the documented endpoint with header auth, the feed); `all_budgets` every budget of a key used at
once — feed, header-auth pool, and the separate `?api_key=` pool when it has one — and the same for
1 … `keys` keys, each key with its own buckets.
"""

from __future__ import annotations

import math

from .config import SimConfig


def bounds(cfg: SimConfig, total: int, failed: int = 0, cut_pages: float = 0.0) -> dict:
    """The answer of `/__sim/bounds` for `total` events; seconds rounded to the millisecond.

    `failed`: requests the simulator has failed so far (5xx, reset, held past `slow_seconds`); each spent
    a request of its budget, so `with_failures` gives the all-budgets minimum with that many pages more.
    `cut_pages`: what bodies cut mid-JSON left unsent, in pages (the events after the cut / the page size):
    `with_cut_bodies` adds them too, a bound a client that keeps the events before the cut can reach.
    """
    pages = -(-total // cfg.max_limit) if total else 0
    page_latency = (cfg.latency_base_ms + cfg.latency_ms_per_event * min(cfg.max_limit, total)) / 1000.0

    def windowed(limit: int) -> float:
        return ((pages - 1) // limit) * cfg.window_s + page_latency if limit and pages else page_latency

    events = windowed(cfg.events_limit)
    if cfg.feed_throttle == "soft" and cfg.feed_model != "token":
        feed = ((pages - 1) // cfg.feed_per_window()) * cfg.feed_window_s + page_latency if pages else page_latency
    elif cfg.feed_throttle == "soft" and pages > cfg.feed_burst:
        feed = (pages - cfg.feed_burst) / (cfg.feed_rpm / 60.0) + page_latency
    elif cfg.feed_throttle == "shared":
        feed = windowed(cfg.events_limit)
    else:
        feed = page_latency
    query = query_pool(cfg)
    by_keys = {str(k): round(all_budgets_seconds(cfg, pages, page_latency, k), 3) for k in range(1, cfg.keys + 1)}
    with_failures = {str(k): round(all_budgets_seconds(cfg, pages + failed, page_latency, k), 3)
                     for k in range(1, cfg.keys + 1)}
    # what was cut is fetched again: whole requests, however small the pieces
    requests = math.ceil(pages + failed + cut_pages - 1e-9)
    with_cuts = {str(k): round(all_budgets_seconds(cfg, requests, page_latency, k), 3) for k in range(1, cfg.keys + 1)}
    return {"theoretical_min_seconds": {"events": round(events, 3), "feed": round(feed, 3)},
            "pages": pages, "page_latency_seconds": round(page_latency, 3),
            "assumptions": "pages of max_limit events, unlimited parallel partitions, no chaos",
            "all_budgets": {
                "per_key": {"window_s": cfg.window_s, "events_header_per_window": cfg.events_limit,
                            "events_query_per_window": query or None, "feed_throttle": cfg.feed_throttle,
                            "feed_rpm": cfg.feed_rpm, "feed_burst": cfg.feed_burst, "feed_model": cfg.feed_model,
                            "feed_window_s": cfg.feed_window_s, "feed_per_window": cfg.feed_per_window()},
                "min_seconds": by_keys["1"], "keys": cfg.keys, "min_seconds_by_keys": by_keys,
                "assumptions": "each key's feed, header-auth and separate query-auth budgets all in use at once; "
                               "0 per window = unlimited, null = no separate query pool"},
            "with_failures": {
                "failed_requests": failed, "min_seconds_by_keys": with_failures,
                "assumptions": "as all_budgets, with one page more for every request the simulator failed so far "
                               "(5xx, reset, held past slow_seconds): each spent a request of its budget"},
            "with_cut_bodies": {
                "cut_pages": round(cut_pages, 3), "min_seconds_by_keys": with_cuts,
                "assumptions": "as with_failures, with what bodies cut mid-JSON left unsent added, in pages"}}


def query_pool(cfg: SimConfig) -> int:
    """Requests per window of the separate `?api_key=` pool; 0 when query auth shares the header
    bucket or has no limit of its own (its requests then count on the header pool)."""
    if not cfg.query_key_limit or cfg.query_key_shares_bucket:
        return 0
    return min(cfg.events_limit, cfg.query_key_limit) if cfg.events_limit else cfg.query_key_limit


def all_budgets_seconds(cfg: SimConfig, pages: int, page_latency: float, keys: int) -> float:
    """Earliest time `pages` pages are in with every budget of `keys` keys used at once.

    The windowed pools (header and query auth) grant `per_window` requests at each window start. The soft
    feed grants, by its model: `token`, `burst` at once and then `rpm` per minute, continuously; `fixed`
    and `sliding`, `feed_per_window` at each of its window starts (a sliding window is best spent like a
    fixed one: all at once, again a window later). Each page arrives `page_latency` after its request. A
    feed sharing the events bucket adds nothing; an unlimited pool means one round trip.
    """
    if not pages or not cfg.events_limit or cfg.feed_throttle == "none" or cfg.window_s <= 0:
        return page_latency
    per_window = keys * (cfg.events_limit + query_pool(cfg))
    soft = cfg.feed_throttle == "soft"
    token = soft and cfg.feed_model == "token"
    burst, rate = (keys * cfg.feed_burst, keys * cfg.feed_rpm / 60.0) if token else (0, 0.0)
    feed_step = keys * cfg.feed_per_window() if soft and not token else 0

    def granted(t: float) -> int:
        """Requests the step budgets (pools, a windowed feed) have granted by time t (windows at 0, w, 2w ...)."""
        pools = per_window * (int(t // cfg.window_s + 1e-9) + 1)
        return pools + (feed_step * (int(t // cfg.feed_window_s + 1e-9) + 1) if feed_step else 0)

    start = 0.0
    while True:
        later = [cfg.window_s * (int(start // cfg.window_s + 1e-9) + 1)]
        if feed_step:
            later.append(cfg.feed_window_s * (int(start // cfg.feed_window_s + 1e-9) + 1))
        end = min(later)  # the next window start of any step budget
        missing = pages - granted(start) - burst
        if missing <= 0:
            return start + page_latency
        if rate and missing / rate < end:
            return max(start, missing / rate) + page_latency
        start = end
