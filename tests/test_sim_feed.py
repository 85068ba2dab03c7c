"""The dashboard feed: stream-access, tokens and their expiry, since/until, throttles."""

from __future__ import annotations

import requests

from tests.fix_sim import BROWSER_UA, KEY, OTHER_KEY, SimClock, client, read_all, running, stream_token, ts_ms

FEED = "/api/v1/events/d4ta/x7k9/feed"


def _feed(s, url, token, **params) -> requests.Response:
    return s.get(url + FEED, params=params, headers={"X-Stream-Token": token["token"]})


def test_stream_access_answers_like_the_contract_for_a_browser_only():
    with running(token_ttl_s=300) as sim:
        s = client()
        curl = s.post(sim.url + "/internal/dashboard/stream-access", headers={"User-Agent": "curl/8.5.0"})
        py = s.post(sim.url + "/internal/dashboard/stream-access")  # python-requests UA
        ok = s.post(sim.url + "/internal/dashboard/stream-access", headers={"User-Agent": BROWSER_UA})
    assert [(r.status_code, r.json()["code"]) for r in (curl, py)] == [(403, "DASHBOARD_REQUIRED")] * 2
    body = ok.json()
    token = body["streamAccess"].pop("token")
    assert len(token) == 64 and int(token, 16) >= 0
    assert body["streamAccess"] == {"endpoint": FEED, "expiresIn": 300, "tokenHeader": "X-Stream-Token"}
    assert list(body["meta"]) == ["generatedAt", "note"]


def test_stream_access_can_be_switched_off():
    with running(stream_access_enabled=False) as sim:
        r = client().post(sim.url + "/internal/dashboard/stream-access", headers={"User-Agent": BROWSER_UA})
    assert (r.status_code, r.json()["code"]) == (403, "DASHBOARD_REQUIRED")


def test_feed_serves_the_same_events_with_every_timestamp_in_epoch_ms_and_no_rate_headers():
    with running(events=1_500) as sim:
        s = client()
        token = stream_token(s, sim.url)
        feed = read_all(s, sim.url, path=token["endpoint"], limit=400, headers={"X-Stream-Token": token["token"]})
        listed = read_all(s, sim.url, limit=400)
        one = _feed(s, sim.url, token, limit=2)
    assert all(isinstance(e["timestamp"], int) for e in feed)
    assert feed == [{**e, "timestamp": ts_ms(e["timestamp"])} for e in listed]
    assert not [h for h in one.headers if h.lower().startswith("x-ratelimit")]


def test_feed_path_comes_from_the_token_answer():
    with running(feed_path="/api/v1/events/zz/qq/stream") as sim:
        s = client()
        token = stream_token(s, sim.url)
        old = _feed(s, sim.url, token, limit=1)
        new = s.get(sim.url + token["endpoint"], params={"limit": 1}, headers={"X-Stream-Token": token["token"]})
    assert token["endpoint"] == "/api/v1/events/zz/qq/stream"
    assert (old.status_code, old.json()["code"]) == (404, "ENDPOINT_NOT_FOUND")
    assert new.status_code == 200


def test_since_is_inclusive_and_until_exclusive():
    with running(events=1_500) as sim:
        s = client()
        token = stream_token(s, sim.url)
        everything = read_all(s, sim.url, path=FEED, limit=1500, headers={"X-Stream-Token": token["token"]})
        since, until = everything[900]["timestamp"], everything[100]["timestamp"]
        window = read_all(s, sim.url, path=FEED, limit=97, headers={"X-Stream-Token": token["token"]},
                          since=since, until=until)
    assert window == [e for e in everything if since <= e["timestamp"] < until]
    assert window[0]["timestamp"] < until and window[-1]["timestamp"] == since


def test_bad_missing_foreign_or_expired_token_is_invalid_stream_token():
    clock = SimClock()
    with running(clock=clock, token_ttl_s=0.5) as sim:
        s = client()
        token = stream_token(s, sim.url)
        fresh = _feed(s, sim.url, token, limit=1).status_code
        wrong = _feed(s, sim.url, {"token": "ab" * 32}, limit=1)
        missing = s.get(sim.url + FEED)
        foreign = _feed(client(OTHER_KEY), sim.url, token, limit=1)
        clock.advance(0.499)
        last_moment = _feed(s, sim.url, token, limit=1).status_code
        clock.advance(0.001)  # the token's lifetime is over
        expired = _feed(s, sim.url, token, limit=1)
    assert (fresh, last_moment) == (200, 200)
    for r in (wrong, missing, foreign, expired):
        assert (r.status_code, r.json()) == (403, {"error": "Forbidden", "message": "Invalid or expired stream token",
                                                   "code": "INVALID_STREAM_TOKEN"})


def test_soft_throttle_allows_a_burst_then_429_with_retry_after_in_whole_seconds():
    clock = SimClock()
    with running(clock=clock, feed_throttle="soft", feed_rpm=30, feed_burst=3) as sim:  # one token per 2 s
        s = client()
        token = stream_token(s, sim.url)
        codes = [_feed(s, sim.url, token, limit=1) for _ in range(4)]
        clock.advance(int(codes[-1].headers["Retry-After"]))
        later = _feed(s, sim.url, token, limit=1)
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert codes[-1].headers["Retry-After"] == "2"
    assert codes[-1].json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert "X-RateLimit-Limit" not in codes[-1].headers
    assert later.status_code == 200


def test_shared_throttle_spends_the_events_bucket():
    with running("tight", SimClock(), feed_throttle="shared") as sim:  # events: 3 per window
        s = client()
        token = stream_token(s, sim.url)
        feed = [_feed(s, sim.url, token, limit=1).status_code for _ in range(2)]
        events = [s.get(sim.url + "/api/v1/events").status_code for _ in range(2)]
        feed_after = _feed(s, sim.url, token, limit=1)
    assert (feed, events, feed_after.status_code) == ([200, 200], [200, 429], 429)
    assert "X-RateLimit-Limit" not in feed_after.headers and feed_after.headers["Retry-After"] == "2"


def test_no_throttle_on_the_feed_when_none():
    with running(feed_throttle="none") as sim:
        s = client()
        token = stream_token(s, sim.url)
        assert {_feed(s, sim.url, token, limit=1).status_code for _ in range(30)} == {200}


def test_invalid_since_is_400():
    with running() as sim:
        s = client()
        token = stream_token(s, sim.url)
        r = _feed(s, sim.url, token, since="yesterday")
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_PARAMETER")


def test_several_tokens_live_at_once():
    with running() as sim:
        s = client(KEY)
        t1, t2 = stream_token(s, sim.url), stream_token(s, sim.url)
        assert t1["token"] != t2["token"]
        assert [_feed(s, sim.url, t, limit=1).status_code for t in (t1, t2)] == [200, 200]
