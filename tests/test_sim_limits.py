"""Fixed-window rate limits: headers, the 429 sequence and its recovery, penalties, buckets.

The simulator runs on a SimClock: time moves only when a test advances it, so a window never ends
between two requests because the machine is slow.
"""

from __future__ import annotations

import requests

from tests.fix_sim import KEY, OTHER_KEY, SimClock, client, running


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
