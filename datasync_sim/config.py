"""SimConfig: every knob of the simulator, and the four named profiles.

A knob is a field of one frozen dataclass; `profile_config(name, **overrides)` starts from a profile
and applies overrides with `dataclasses.replace`, so tests and the CLI build configs the same way.
Limits of 0 mean "unlimited"; probabilities are per request (per dataset position for
`p_damaged_id`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

NEWEST_TS_MS = 1769541612369  # 2026-01-27T19:20:12.369Z, the newest event seen on the live API
DEFAULT_EVENTS = 3_000_000
FEED_PATH = "/api/v1/events/d4ta/x7k9/feed"
FEED_THROTTLES = ("none", "soft", "shared")
# The soft feed's bucket; the contract says "~40 requests/min, bursts of ~15" and no more, so each is a reading:
# token: a continuous token bucket (feed_rpm, feed_burst) | fixed: feed_rpm × feed_window_s / 60 requests per
# window, the window opened by the first request | sliding: that many in any feed_window_s (a half-open window)
FEED_MODELS = ("token", "fixed", "sliding")
LATE_WHERE = ("top", "middle", "both")
_SHARES = ("odd_timestamps", "poison_rate")  # besides the p_ fields, knobs that must lie within [0, 1]


@dataclass(frozen=True)
class SimConfig:
    """All simulator settings; build with `profile_config`, change with `dataclasses.replace`."""

    profile: str = "fast"
    events: int = DEFAULT_EVENTS
    seed: int = 1
    api_key: str | None = None  # the valid key(s), comma-separated, each with its own buckets; None: any `ds_<32 hex>`
    keys: int = 1  # keys a client spreads its requests over, for /__sim/bounds' all_budgets
    key_ttl_s: float = 0.0  # key expires this long after its first use; 0 = never
    # dataset shape
    newest_ts: int = NEWEST_TS_MS
    span_days: float = 30.0
    tie_group_rate: float = 0.036  # P(a tie group starts at an event); ~10% of events end up in ties
    # held back until POST /__sim/release-late: absent from listings, meta.total and /__sim/expected
    late_events: int = 0  # at old timestamps (late_where); materialised on release, ~0.5 KB each
    late_where: str = "top"  # top: last 30 min below the newest | middle: mid-range | both: half each
    new_events: int = 0  # above the newest (the newest moves up on release)
    # paging
    default_limit: int = 100
    max_limit: int = 5000
    cursor_ttl_s: float = 117.0
    reject_forged_cursors: bool = False
    bad_cursor_status: int = 400  # 502 reproduces the early reports
    # rate limits: fixed windows opened by the first request, per key and bucket; 0 = unlimited
    window_s: float = 60.0
    events_limit: int = 0
    sessions_limit: int = 0
    metrics_limit: int = 0
    bulk_limit: int = 0
    query_key_limit: int = 0  # `?api_key=` auth; min() with the bucket's own limit
    query_key_shares_bucket: bool = False
    stream_access_limit: int = 0
    penalize_early_retries: bool = False  # a request inside a 429 lockout restarts a full window
    # X-RateLimit-Reset and Retry-After in whole seconds rounded down (the contract does not say which way):
    # a client that waits exactly Retry-After may arrive up to a second inside the lockout
    round_reset_down: bool = False
    # fast feed
    feed_path: str = FEED_PATH
    stream_access_enabled: bool = True
    token_ttl_s: float = 3600.0
    feed_throttle: str = "none"  # none | soft (rpm + burst token bucket) | shared (events bucket)
    feed_rpm: float = 40.0
    feed_burst: int = 15
    feed_model: str = "token"  # token | fixed | sliding (FEED_MODELS), for feed_throttle soft
    feed_window_s: float = 60.0  # s; the window of the fixed and sliding feed models
    # latency, slept without holding any lock so concurrent requests overlap
    latency_ms_per_event: float = 0.0
    latency_base_ms: float = 0.0
    # chaos: probabilities, decided by a RNG seeded from (seed, request number)
    p_5xx: float = 0.0
    p_truncate: float = 0.0
    p_reset: float = 0.0
    p_slow: float = 0.0
    slow_seconds: float = 35.0
    p_no_pagination: float = 0.0
    p_missing_fields: float = 0.0
    p_ts_variant: float = 0.0
    odd_timestamps: float = 0.0  # share of events whose /api/v1/events timestamp is odd (fixed per event)
    poison_rate: float = 0.0  # share of listing pages with one event orjson refuses (fixed per page)
    p_damaged_id: float = 0.0  # per dataset position, fixed for a seed; those ids are never valid
    p_replay: float = 0.0
    p_bulk_500: float = 0.0
    # caches
    cache_ttl_s: float = 30.0  # X-Cache HIT window for repeated identical GETs

    def __post_init__(self) -> None:
        if self.events < 0:
            raise ValueError(f"events must be >= 0, got {self.events}")
        if self.keys < 1:
            raise ValueError(f"keys must be >= 1, got {self.keys}")
        if self.api_key and len(self.api_keys()) < self.keys:
            raise ValueError(f"keys is {self.keys} but api_key lists {len(self.api_keys())} valid key(s)")
        if self.late_events < 0 or self.new_events < 0:
            raise ValueError("late_events and new_events must be >= 0")
        if self.late_events and not self.events:
            raise ValueError("late_events needs events > 0 (late events join base sessions)")
        if self.late_where not in LATE_WHERE:
            raise ValueError(f"late_where must be one of {LATE_WHERE}, got {self.late_where!r}")
        if self.feed_throttle not in FEED_THROTTLES:
            raise ValueError(f"feed_throttle must be one of {FEED_THROTTLES}, got {self.feed_throttle!r}")
        if self.feed_model not in FEED_MODELS:
            raise ValueError(f"feed_model must be one of {FEED_MODELS}, got {self.feed_model!r}")
        if self.feed_window_s <= 0 or self.feed_per_window() < 1:
            raise ValueError("feed_window_s must be > 0 and hold at least one request at feed_rpm")
        if not self.feed_path.startswith("/"):
            raise ValueError(f"feed_path must start with '/', got {self.feed_path!r}")
        if self.max_limit < 1 or self.default_limit < 1:
            raise ValueError("default_limit and max_limit must be >= 1")
        if self.bad_cursor_status not in (400, 502):
            raise ValueError(f"bad_cursor_status must be 400 or 502, got {self.bad_cursor_status}")
        for f in dataclasses.fields(self):
            if (f.name.startswith("p_") or f.name in _SHARES) and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise ValueError(f"{f.name} must be within [0, 1], got {getattr(self, f.name)}")

    def feed_per_window(self) -> int:
        """Requests per `feed_window_s` of the fixed and sliding feed models: `feed_rpm` over that window."""
        return int(self.feed_rpm * self.feed_window_s / 60.0 + 1e-9)

    def api_keys(self) -> list[str]:
        """The valid keys listed in `api_key`; empty when any well-formed key is valid."""
        return [k for k in (self.api_key or "").split(",") if k]


_LIGHT_CHAOS = dict(
    p_5xx=0.01, p_truncate=0.01, p_reset=0.01, p_slow=0.01, p_no_pagination=0.01,
    p_missing_fields=0.01, p_ts_variant=0.01, p_replay=0.01,
    # "3,000,003 unique ids" on the live API: a handful of damaged ids in 3M, not 1%
    p_damaged_id=1e-6, p_bulk_500=0.2,
)
_HEAVY_CHAOS = dict(
    p_5xx=0.08, p_truncate=0.06, p_reset=0.05, p_slow=0.05, p_no_pagination=0.06,
    p_missing_fields=0.08, p_ts_variant=0.1, p_replay=0.08, p_damaged_id=2e-4, p_bulk_500=0.3,
)

PROFILES: dict[str, dict] = {
    "live": dict(
        window_s=60.0, events_limit=10, sessions_limit=40, metrics_limit=30, bulk_limit=20,
        query_key_limit=5, stream_access_limit=10, key_ttl_s=5400.0,
        feed_throttle="soft", feed_rpm=40.0, feed_burst=15,
        latency_ms_per_event=0.7, latency_base_ms=20.0,
        cursor_ttl_s=117.0, token_ttl_s=300.0, slow_seconds=35.0, **_LIGHT_CHAOS,
    ),
    "fast": dict(cursor_ttl_s=3600.0, token_ttl_s=3600.0),
    "chaos": dict(
        latency_ms_per_event=0.01, latency_base_ms=1.0, cursor_ttl_s=117.0, token_ttl_s=300.0,
        slow_seconds=3.0, **_HEAVY_CHAOS,
    ),
    "tight": dict(
        window_s=2.0, events_limit=3, sessions_limit=3, metrics_limit=3, bulk_limit=3,
        query_key_limit=2, stream_access_limit=3, penalize_early_retries=True,
        feed_throttle="soft", feed_rpm=600.0, feed_burst=2, cursor_ttl_s=117.0, token_ttl_s=300.0,
    ),
}


def profile_config(name: str = "fast", **overrides) -> SimConfig:
    """The config of profile `name` (live, fast, chaos, tight) with `overrides` applied.

    Raises ValueError for an unknown profile or knob, or a knob value out of range.
    """
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    known = {f.name for f in dataclasses.fields(SimConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown knob(s): {', '.join(unknown)}")
    return dataclasses.replace(SimConfig(profile=name, **PROFILES[name]), **overrides)
