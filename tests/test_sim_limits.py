"""Fixed-window rate limits: headers, the 429 sequence and its recovery, penalties, buckets.

The simulator runs on a SimClock: time moves only when a test advances it, so a window never ends
between two requests because the machine is slow.
"""

from __future__ import annotations

import pytest
import requests

from datasync_sim import profile_config
from tests.fix_clock import START
from tests.fix_sim import KEY, OTHER_KEY, SimClock, client, running, stream_token


def _rate(r: requests.Response) -> tuple[str, str, str] | None:
    h = r.headers
    if "X-RateLimit-Limit" not in h:
        return None
    return h["X-RateLimit-Limit"], h["X-RateLimit-Remaining"], h["X-RateLimit-Reset"]


def test_eleventh_request_in_a_window_gets_429_with_retry_after_then_recovers():
    clock = SimClock()
    with running("tight", clock, events_limit=10, window_s=3.0, penalize_early_retries=False) as sim:
        s = client()
        answers = [s.get(sim.url + "/api/v1/events", params={"limit": 5}) for _ in range(11)]
        refused = answers[-1]
        clock.advance(int(refused.headers["Retry-After"]))
        again = s.get(sim.url + "/api/v1/events")
        stats = requests.get(sim.url + "/__sim/stats").json()
    assert [r.status_code for r in answers] == [200] * 10 + [429]
    assert [_rate(r)[:2] for r in answers] == [("10", str(9 - i)) for i in range(10)] + [("10", "0")]
    assert {_rate(r)[2] for r in answers} == {"3"}
    assert refused.headers["Retry-After"] == "3"
    assert refused.json() == {
        "error": "Too Many Requests", "message": "Rate limit exceeded. Try again in 3 seconds.",
        "code": "RATE_LIMIT_EXCEEDED", "rateLimit": {"limit": 10, "remaining": 0, "reset": 3, "retryAfter": 3}}
    assert (again.status_code, _rate(again)) == (200, ("10", "9", "3"))
    assert stats["requests"]["events"] == {"200": 11, "429": 1}
    assert (stats["rate_limited"], stats["early_retries"]) == (1, 0)


def test_reset_counts_down_the_seconds_left_in_the_window():
    clock = SimClock()
    with running("tight", clock, events_limit=10, window_s=3.0) as sim:
        s = client()
        first = s.get(sim.url + "/api/v1/events")
        clock.advance(1.2)
        later = s.get(sim.url + "/api/v1/events")
    assert (_rate(first), _rate(later)) == (("10", "9", "3"), ("10", "8", "2"))


def test_reset_and_retry_after_round_down_when_switched():
    clock = SimClock()
    with running("tight", clock, events_limit=1, window_s=3.0, round_reset_down=True) as sim:
        s = client()
        first = s.get(sim.url + "/api/v1/events")
        clock.advance(1.2)
        refused = s.get(sim.url + "/api/v1/events")
    # 3.0 s left: 3; 1.8 s left: 1 (rounded up: 2)
    assert (_rate(first), refused.status_code, refused.headers["Retry-After"]) == (("1", "0", "3"), 429, "1")


def test_early_retry_extends_the_lockout_only_when_penalized():
    outcomes = {}
    for penalize in (False, True):
        clock = SimClock()
        with running("tight", clock, penalize_early_retries=penalize) as sim:  # 3 per 2 s
            s = client()
            codes = [s.get(sim.url + "/api/v1/events").status_code for _ in range(4)]
            clock.advance(1.0)
            early = s.get(sim.url + "/api/v1/events")
            clock.advance(1.1)  # the original window is over now
            after = s.get(sim.url + "/api/v1/events")
            stats = requests.get(sim.url + "/__sim/stats").json()
        outcomes[penalize] = (codes, early.status_code, early.headers["Retry-After"], after.status_code,
                              stats["early_retries"], stats["early_by_endpoint"], stats["rate_limited"])
    assert outcomes == {
        False: ([200, 200, 200, 429], 429, "1", 200, 1, {"events": 1}, 2),
        True: ([200, 200, 200, 429], 429, "2", 429, 2, {"events": 2}, 3),
    }


def test_unknown_event_404_costs_a_request_and_unknown_paths_cost_nothing():
    with running("tight", SimClock()) as sim:  # 3 per window
        s = client()
        missing = s.get(sim.url + "/api/v1/events/export")
        nowhere = [s.get(sim.url + "/api/v2/events") for _ in range(5)]
        rest = [s.get(sim.url + "/api/v1/events").status_code for _ in range(3)]
    assert (missing.status_code, _rate(missing)[:2]) == (404, ("3", "2"))
    assert missing.json() == {"error": "Not Found", "message": "Event with id 'export' not found",
                              "code": "EVENT_NOT_FOUND"}
    assert [(r.status_code, _rate(r)) for r in nowhere] == [(404, None)] * 5
    assert nowhere[0].json() == {"error": "Not Found", "message": "The requested endpoint does not exist",
                                 "code": "ENDPOINT_NOT_FOUND"}
    assert rest == [200, 200, 429]


def test_buckets_are_per_key_and_per_endpoint():
    with running("tight", SimClock(), sessions_limit=5, metrics_limit=4) as sim:
        a, b = client(KEY), client(OTHER_KEY)
        events_a = [a.get(sim.url + "/api/v1/events").status_code for _ in range(4)]
        events_b = b.get(sim.url + "/api/v1/events")
        sessions_a = a.get(sim.url + "/api/v1/sessions", params={"limit": 1})
        metrics_a = a.get(sim.url + "/api/v1/metrics")
    assert events_a == [200, 200, 200, 429]
    assert (events_b.status_code, _rate(events_b)) == (200, ("3", "2", "2"))
    assert (sessions_a.status_code, _rate(sessions_a)) == (200, ("5", "4", "2"))
    assert (metrics_a.status_code, _rate(metrics_a)) == (200, ("4", "3", "2"))


def test_query_key_has_the_lower_limit_in_its_own_bucket_or_shared_when_switched():
    with running("tight", SimClock(), events_limit=4, query_key_limit=2) as sim, \
            running("tight", SimClock(), events_limit=4, query_key_limit=2, query_key_shares_bucket=True) as shared:
        results = {}
        for name, srv in (("own", sim), ("shared", shared)):
            q = [requests.get(srv.url + "/api/v1/events", params={"api_key": KEY}).status_code for _ in range(3)]
            h = [client().get(srv.url + "/api/v1/events").status_code for _ in range(3)]
            results[name] = (q, h)
    assert results == {"own": ([200, 200, 429], [200, 200, 200]), "shared": ([200, 200, 429], [429, 429, 429])}


def test_missing_or_invalid_key_is_401_and_costs_nothing():
    with running("tight", SimClock(), api_key=KEY) as sim:
        none = requests.get(sim.url + "/api/v1/events")
        other = client(OTHER_KEY).get(sim.url + "/api/v1/events")
        good = [client().get(sim.url + "/api/v1/events").status_code for _ in range(3)]
    with running("tight", SimClock()) as sim:
        malformed = client("ds_NOTHEX").get(sim.url + "/api/v1/events")
    assert (none.status_code, none.json()["code"], _rate(none)) == (401, "MISSING_API_KEY", None)
    assert (other.status_code, other.json()) == (401, {"error": "Unauthorized", "message": "Invalid API key",
                                                      "code": "INVALID_API_KEY"})
    assert malformed.status_code == 401
    assert good == [200, 200, 200]


def test_key_expires_after_its_ttl_from_first_use():
    clock = SimClock()
    with running(clock=clock, key_ttl_s=0.5) as sim:
        s = client()
        first = s.get(sim.url + "/api/v1/events").status_code
        clock.advance(0.5)
        last_moment = s.get(sim.url + "/api/v1/events").status_code  # 0.5 s after first use: still valid
        clock.advance(0.001)
        late = s.get(sim.url + "/api/v1/events")
    assert (first, last_moment, late.status_code, late.json()["code"]) == (200, 200, 401, "API_KEY_EXPIRED")


def _feed_timeline(model: str, at: list[float], penalize: bool = False) -> list[tuple[float, int, str | None]]:
    """(second, status, Retry-After) of one feed request at each offset of `at`, 2 requests per 10 s (12/min)."""
    clock = SimClock()
    with running(clock=clock, feed_throttle="soft", feed_model=model, feed_rpm=12, feed_burst=2,
                 feed_window_s=10.0, penalize_early_retries=penalize) as sim:
        s = client()
        token = stream_token(s, sim.url)
        out = []
        for t in at:
            clock.advance(t - (clock.now - START))
            r = s.get(sim.url + token["endpoint"], params={"limit": 1}, headers={"X-Stream-Token": token["token"]})
            out.append((t, r.status_code, r.headers.get("Retry-After")))
        stats = requests.get(sim.url + "/__sim/stats").json()
    return out + [("early", stats["early_retries"], str(stats["early_by_endpoint"]))]


def test_feed_token_model_refills_one_request_at_a_time():
    # burst 2, one token per 5 s: the third is refused until 5 s, one more each 5 s after
    assert _feed_timeline("token", [0, 1, 2, 5, 6, 10.5]) == [
        (0, 200, None), (1, 200, None), (2, 429, "3"), (5, 200, None), (6, 429, "4"), (10.5, 200, None),
        ("early", 0, "{}")]


def test_feed_fixed_model_grants_its_window_opened_by_the_first_request_at_once():
    # 2 per 10 s from the first request (at 1 s): refused until 11 s; the request at 11 s opens the next
    assert _feed_timeline("fixed", [1, 2, 3, 11, 11.5, 12]) == [
        (1, 200, None), (2, 200, None), (3, 429, "8"), (11, 200, None), (11.5, 200, None), (12, 429, "9"),
        ("early", 0, "{}")]


def test_feed_sliding_model_counts_the_requests_of_the_last_window():
    # 2 in any 10 s: at 11 s only the grant of 1 s has left the window, at 13 s the one of 5 s is still in it
    assert _feed_timeline("sliding", [1, 5, 6, 11, 13, 15]) == [
        (1, 200, None), (5, 200, None), (6, 429, "5"), (11, 200, None), (13, 429, "2"), (15, 200, None),
        ("early", 0, "{}")]


def test_an_early_retry_on_the_feed_is_penalised_in_every_model():
    """With penalties a request inside the lockout restarts a full window (fixed, sliding) or spends a token
    it does not have (token): the request at the original deadline is refused too; without, it passes."""
    cases = {"token": [0, 1, 2, 3, 5], "fixed": [0, 1, 2, 3, 10], "sliding": [0, 1, 2, 3, 10]}
    got = {(model, penalize): [code for _, code, _ in _feed_timeline(model, at, penalize)[:-1]]
           for model, at in cases.items() for penalize in (False, True)}
    assert got == {("token", False): [200, 200, 429, 429, 200], ("token", True): [200, 200, 429, 429, 429],
                   ("fixed", False): [200, 200, 429, 429, 200], ("fixed", True): [200, 200, 429, 429, 429],
                   ("sliding", False): [200, 200, 429, 429, 200], ("sliding", True): [200, 200, 429, 429, 429]}


def test_the_feed_model_is_a_simulator_option():
    from datasync_sim.__main__ import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(["--feed-model", "sliding", "--feed-window-s", "30"]))
    assert (cfg.feed_throttle, cfg.feed_model, cfg.feed_window_s, cfg.feed_per_window()) == (
        "soft", "sliding", 30.0, 20)
    with pytest.raises(ValueError, match="feed_model must be one of"):
        profile_config("live", feed_model="leaky")
