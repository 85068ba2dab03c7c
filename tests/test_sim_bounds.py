"""`/__sim/bounds`: the minimum time per path and with every budget of one or more keys at once."""

from __future__ import annotations

import pytest
import requests

from datasync_sim import profile_config
from tests.fix_sim import BROWSER_UA, KEY, OTHER_KEY, SimClock, client, running

THIRD_KEY = "ds_" + "c" * 32


def _bounds(url: str) -> dict:
    return requests.get(url + "/__sim/bounds", timeout=10).json()


def test_all_budgets_add_the_feed_the_header_pool_and_the_separate_query_pool_per_key():
    with running("live", events=3_000_000, keys=2) as sim, \
            running("live", events=3_000_000, query_key_shares_bucket=True) as shared:
        own, common = _bounds(sim.url), _bounds(shared.url)
    # one key: 15 windowed pages a minute (10 header + 5 query) and the feed's 15 + 40/min;
    # 11 windows give 165, the feed must bring 420 more: 630 s, plus one page's 3.52 s
    assert own["all_budgets"] == {
        "per_key": {"window_s": 60.0, "events_header_per_window": 10, "events_query_per_window": 5,
                    "feed_throttle": "soft", "feed_rpm": 40.0, "feed_burst": 15, "feed_model": "token",
                    "feed_window_s": 60.0, "feed_per_window": 40},
        "min_seconds": 633.52, "keys": 2, "min_seconds_by_keys": {"1": 633.52, "2": 303.52},
        "assumptions": "each key's feed, header-auth and separate query-auth budgets all in use at once; "
                       "0 per window = unlimited, null = no separate query pool"}
    # a shared query bucket adds nothing: 12 windows of 10 and 15 + 37.5 s of feed
    assert common["all_budgets"]["per_key"]["events_query_per_window"] is None
    assert common["all_budgets"]["min_seconds_by_keys"] == {"1": 701.02}
    assert own["theoretical_min_seconds"] == common["theoretical_min_seconds"] == {"events": 3543.52, "feed": 881.02}


@pytest.mark.parametrize(("knobs", "seconds"), [
    ({"feed_throttle": "shared"}, 39 * 60 + 3.52),  # the feed spends the events bucket: 15 pages a window
    ({"feed_throttle": "none"}, 3.52),  # an unthrottled feed fetches every page at once
])
def test_a_feed_without_a_budget_of_its_own_or_without_a_limit(knobs, seconds):
    with running("live", events=3_000_000, **knobs) as sim:
        assert _bounds(sim.url)["all_budgets"]["min_seconds"] == seconds


def test_each_listed_key_has_the_budgets_the_bound_counts():
    """tight: 3 header + 2 query requests per window and a feed burst of 2, for each of the two keys."""
    # On a SimClock: the feed's bucket (10 a second) refills nothing between the requests, however slow they are.
    with running("tight", SimClock(), api_key=f"{KEY},{OTHER_KEY}", keys=2, window_s=30.0) as sim:
        granted = {}
        for key in (KEY, OTHER_KEY):
            s = client(key)
            token = s.post(sim.url + "/internal/dashboard/stream-access", headers={"User-Agent": BROWSER_UA}).json()
            header = [s.get(sim.url + "/api/v1/events").status_code for _ in range(4)]
            query = [requests.get(sim.url + "/api/v1/events", params={"api_key": key}).status_code for _ in range(3)]
            feed = [s.get(sim.url + token["streamAccess"]["endpoint"],
                          headers={"X-Stream-Token": token["streamAccess"]["token"]}).status_code for _ in range(3)]
            granted[key] = (header, query, feed)
        third = client(THIRD_KEY).get(sim.url + "/api/v1/events")
        bound = _bounds(sim.url)["all_budgets"]
    assert granted[KEY] == granted[OTHER_KEY] == ([200, 200, 200, 429], [200, 200, 429], [200, 200, 429])
    assert (third.status_code, third.json()["code"]) == (401, "INVALID_API_KEY")
    assert (bound["keys"], bound["per_key"]["events_header_per_window"], bound["per_key"]["events_query_per_window"],
            bound["per_key"]["feed_burst"]) == (2, 3, 2, 2)


@pytest.mark.parametrize(("model", "events", "feed", "everything"), [
    # 60 pages. token: 15 at once, then 45 at 40/min: 67.5 s; with the pools' 15 at 0: 30 more, 45 s
    ("token", 300_000, 67.5, 45.0),
    # fixed and sliding: 40 at 0 and 20 at 60 s; with the pools' 15 at 0: 40 + 15 = 55 at 0, the rest at 60 s
    ("fixed", 300_000, 60.0, 60.0),
    ("sliding", 300_000, 60.0, 60.0),
    # 600 pages: the windowed feed brings 40 a minute and the pools 15: 11 windows give 605
    ("fixed", 3_000_000, 14 * 60.0, 10 * 60.0),
    ("sliding", 3_000_000, 14 * 60.0, 10 * 60.0),
])
def test_the_minimum_follows_the_feeds_bucket_model(model, events, feed, everything):
    with running("live", events=events, feed_model=model) as sim:
        b = _bounds(sim.url)
    latency = b["page_latency_seconds"]
    assert (b["theoretical_min_seconds"]["feed"], b["all_budgets"]["min_seconds"]) == (
        round(feed + latency, 3), round(everything + latency, 3))
    assert b["all_budgets"]["per_key"]["feed_model"] == model


def test_a_windowed_feed_model_with_a_window_of_its_own():
    """20 per 30 s beside the pools' 15 per 60 s: 60 pages need 15 + 20 at 0, 20 at 30 s, 20 more at 60 s."""
    with running("live", events=300_000, feed_model="fixed", feed_window_s=30.0) as sim:
        b = _bounds(sim.url)
    assert b["all_budgets"]["per_key"]["feed_per_window"] == 20
    assert b["all_budgets"]["min_seconds"] == round(60.0 + b["page_latency_seconds"], 3)


def test_keys_cannot_exceed_the_listed_keys():
    with pytest.raises(ValueError, match="keys is 3 but api_key lists 2 valid key"):
        profile_config("live", api_key=f"{KEY},{OTHER_KEY}", keys=3)


def test_requests_the_simulator_failed_are_counted_in_a_second_minimum():
    with running("live", events=3_000_000, p_5xx=1.0, p_reset=0.0, p_slow=0.0) as sim:
        before = _bounds(sim.url)
        statuses = [client().get(sim.url + "/api/v1/events").status_code for _ in range(3)]
        after = _bounds(sim.url)
    assert all(status >= 500 for status in statuses)
    assert before["with_failures"]["failed_requests"] == 0
    assert before["with_failures"]["min_seconds_by_keys"] == {"1": 633.52}  # nothing failed: the minimum itself
    # three pages more: the feed brings them at 40/min after the last window, 4.5 s
    assert after["with_failures"]["failed_requests"] == 3
    assert after["with_failures"]["min_seconds_by_keys"] == {"1": 638.02}


def test_what_cut_bodies_left_unsent_is_counted_in_a_third_minimum_and_not_in_the_second():
    with running("live", events=3_000_000, p_5xx=0.0, p_reset=0.0, p_slow=0.0, p_truncate=1.0) as sim:
        before = _bounds(sim.url)
        pages = [client().get(sim.url + "/api/v1/events", params={"limit": 5000}) for _ in range(3)]
        after = _bounds(sim.url)
    assert all(page.status_code == 200 and len(page.content) < 1_500_000 for page in pages)  # cut: ~1.73 MB whole
    assert before["with_cut_bodies"] == {**before["with_cut_bodies"], "cut_pages": 0.0,
                                         "min_seconds_by_keys": {"1": 633.52}}
    assert after["with_failures"]["min_seconds_by_keys"] == {"1": 633.52}  # a cut body is no failed request
    # each body kept 10-90 %: 0.3-2.7 pages unsent, one to three requests more at the feed's 1.5 s each
    assert 0.3 <= after["with_cut_bodies"]["cut_pages"] <= 2.7
    assert after["with_cut_bodies"]["min_seconds_by_keys"]["1"] in (635.02, 636.52, 638.02)
