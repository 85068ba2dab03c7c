"""The other endpoints and envelopes: manifest, headers, limits, filters, one event, bulk, sessions,
metrics, submissions, introspection."""

from __future__ import annotations

import hashlib
import time

import pytest
import requests

from tests.fix_sim import KEY, OTHER_KEY, client, events_page, read_all, running, ts_ms


def test_manifest_is_the_captured_one():
    with running() as sim:
        r = requests.get(sim.url + "/api/v1")
    assert r.json() == {"name": "DataSync Analytics API", "version": "v1",
                        "endpoints": {"events": "/api/v1/events", "sessions": "/api/v1/sessions",
                                      "metrics": "/api/v1/metrics"},
                        "authentication": {"method": "API Key", "header": "X-API-Key"}}


def test_events_answer_carries_the_captured_headers_and_envelope():
    with running("live", events=1_000, latency_ms_per_event=0, latency_base_ms=0, **_no_chaos()) as sim:
        s = client()
        r = s.get(sim.url + "/api/v1/events", params={"limit": 10})
        again = s.get(sim.url + "/api/v1/events", params={"limit": 10})
    body = r.json()
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert r.headers["X-Request-ID"] == body["meta"]["requestId"]
    assert (r.headers["X-RateLimit-Limit"], r.headers["X-RateLimit-Remaining"]) == ("10", "9")
    assert (r.headers["X-Cache"], again.headers["X-Cache"], r.headers["X-Cache-TTL"]) == ("MISS", "HIT", "30")
    assert r.headers["ETag"].startswith('W/"')
    assert list(body) == ["data", "pagination", "meta"]
    assert body["meta"] == {"total": 1_000, "returned": 10, "requestId": body["meta"]["requestId"]}
    assert body["pagination"]["cursorExpiresIn"] == 117


def _no_chaos() -> dict:
    return dict(p_5xx=0, p_truncate=0, p_reset=0, p_slow=0, p_no_pagination=0, p_missing_fields=0,
                p_ts_variant=0, p_replay=0, p_damaged_id=0)


def test_limit_defaults_to_100_and_is_capped_at_5000_and_other_params_are_ignored():
    with running(events=6_000) as sim:
        s = client()
        default = events_page(s, sim.url)
        capped = events_page(s, sim.url, limit=99_999)
        ignored = events_page(s, sim.url, limit=5, offset=100, page=3, sort="asc", fields="id", since=1, until=2)
        head = s.head(sim.url + "/api/v1/events", params={"limit": 5})
    assert (default["pagination"]["limit"], len(default["data"])) == (100, 100)
    assert (capped["pagination"]["limit"], len(capped["data"])) == (5000, 5000)
    assert [e["id"] for e in ignored["data"]] == [e["id"] for e in default["data"][:5]]
    assert (head.status_code, head.content, int(head.headers["Content-Length"]) > 1000) == (200, b"", True)


def test_session_and_type_filters():
    with running(events=3_000) as sim:
        s = client()
        everything = read_all(s, sim.url, limit=5000)
        sid = everything[10]["sessionId"]
        by_session = read_all(s, sim.url, limit=7, sessionId=sid)
        purchases = read_all(s, sim.url, limit=40, type="purchase")
        both = read_all(s, sim.url, limit=5, sessionId=sid, type="page_view")
        nothing = events_page(s, sim.url, type="nope")
    assert _ms(by_session) == _ms([e for e in everything if e["sessionId"] == sid])
    assert [e["id"] for e in purchases] == [e["id"] for e in everything if e["type"] == "purchase"]
    assert [e["id"] for e in both] == [e["id"] for e in by_session if e["type"] == "page_view"]
    assert (nothing["data"], nothing["pagination"]["hasMore"]) == ([], False)


def _ms(events: list[dict]) -> list[dict]:
    return [{**e, "timestamp": ts_ms(e["timestamp"])} for e in events]


def test_one_event_by_id_and_bulk():
    with running() as sim:
        s = client()
        events = events_page(s, sim.url, limit=3)["data"]
        one = s.get(sim.url + "/api/v1/events/" + events[1]["id"])
        bulk = s.post(sim.url + "/api/v1/events/bulk", json={"ids": [events[2]["id"], "nope", events[0]["id"]]})
        too_many = s.post(sim.url + "/api/v1/events/bulk", json={"ids": ["x"] * 101})
    assert one.json()["data"] == {**events[1], "timestamp": ts_ms(events[1]["timestamp"])}
    assert [e["id"] for e in bulk.json()["data"]] == [events[2]["id"], events[0]["id"]]
    assert {k: v for k, v in bulk.json()["meta"].items() if k != "requestId"} == {"requested": 3, "found": 2}
    assert (too_many.status_code, too_many.json()["code"]) == (400, "TOO_MANY_IDS")


def test_sessions_are_listed_with_the_envelope_and_metrics_are_empty():
    with running(events=3_000) as sim:
        s = client()
        sessions = read_all(s, sim.url, path="/api/v1/sessions", limit=25)
        events = read_all(s, sim.url, limit=5000)
        metrics = s.get(sim.url + "/api/v1/metrics").json()
    assert len(sessions) == 60 == len({e["sessionId"] for e in events})
    assert {x["id"]: x["eventCount"] for x in sessions} == {
        sid: sum(e["sessionId"] == sid for e in events) for sid in {e["sessionId"] for e in events}}
    assert list(sessions[0]) == ["id", "userId", "deviceType", "browser", "eventCount"]
    assert (metrics["data"], metrics["meta"]["total"], metrics["pagination"]["hasMore"]) == ([], 0, False)


def test_submissions_count_unique_ids_in_both_forms_at_most_five_per_key():
    repo = "https://github.com/example/repo"
    with running(events=500) as sim:
        s = client()
        ids = [e["id"] for e in read_all(s, sim.url, limit=500)]
        text = s.post(sim.url + "/api/v1/submissions", params={"github_repo": repo},
                      data="\n".join(ids + ids[:10]) + "\n", headers={"Content-Type": "text/plain"})
        js = s.post(sim.url + "/api/v1/submissions", json={"ids": "\n".join(ids[:100]), "githubRepoUrl": repo})
        more = [s.post(sim.url + "/api/v1/submissions", data="a\nb", headers={"Content-Type": "text/plain"})
                for _ in range(4)]
        listing = s.get(sim.url + "/api/v1/submissions").json()
        other = client(OTHER_KEY).get(sim.url + "/api/v1/submissions").json()
        audit = requests.get(sim.url + "/__sim/submissions").json()
    first = text.json()
    assert first["success"] is True
    assert first["message"] == "Submission #1 received with 500 event IDs. 4 submissions remaining."
    assert {k: first["data"][k] for k in ("eventCount", "githubRepoUrl", "submissionNumber",
                                          "remainingSubmissions")} == {
        "eventCount": 500, "githubRepoUrl": repo, "submissionNumber": 1, "remainingSubmissions": 4}
    assert list(first["data"]["timeToSubmit"]) == ["ms", "seconds", "minutes", "formatted"]
    assert js.json()["data"]["eventCount"] == 100
    assert [r.status_code for r in more] == [200, 200, 200, 403]
    assert more[-1].json()["code"] == "SUBMISSION_LIMIT_REACHED"
    assert [x["submissionNumber"] for x in listing["data"]] == [1, 2, 3, 4, 5]
    assert listing["meta"] == {"total": 5, "remainingSubmissions": 0}
    assert other["data"] == []
    assert (audit[0]["eventCount"], audit[0]["validCount"], audit[0]["matchesExpected"]) == (500, 500, True)
    assert audit[0]["sha256"] == hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
    assert [a["matchesExpected"] for a in audit[1:]] == [False] * 4


def test_bounds_follow_the_config():
    with running("live", events=3_000_000) as sim:
        live = requests.get(sim.url + "/__sim/bounds").json()
    with running("fast", events=3_000_000) as sim:
        fast = requests.get(sim.url + "/__sim/bounds").json()
    # 600 pages, 10 per 60 s: 59 more windows after the first, then one page of 3.5 s (+20 ms base)
    assert live["theoretical_min_seconds"] == {"events": 59 * 60 + 3.52, "feed": (600 - 15) * 1.5 + 3.52}
    assert fast["theoretical_min_seconds"] == {"events": 0.0, "feed": 0.0}
    assert live["pages"] == 600


def test_stats_count_requests_by_endpoint_and_status_and_events_served():
    with running() as sim:
        s = client()
        events_page(s, sim.url, limit=30)
        s.get(sim.url + "/api/v1/events/unknown")
        s.get(sim.url + "/nowhere")
        requests.get(sim.url + "/api/v1/events")
        stats = requests.get(sim.url + "/__sim/stats").json()
    assert stats["requests"] == {"events": {"200": 1, "401": 1}, "event": {"404": 1}, "not_found": {"404": 1}}
    assert stats["events_served"] == 30
    assert stats["bytes_sent"] > 30 * 300
    assert (stats["rate_limited"], stats["early_retries"]) == (0, 0)


def test_the_simulators_own_work_is_part_of_the_modelled_latency_not_on_top(monkeypatch: pytest.MonkeyPatch):
    import types

    from datasync_sim import server

    with running(latency_ms_per_event=2.0, events=3_000) as sim:  # 0.5 s per 250-event page
        slept: list[float] = []
        ticks = iter([100.0, 100.2])  # the request is handled in 0.2 s of the simulator's own work
        monkeypatch.setattr(server, "time", types.SimpleNamespace(sleep=slept.append, monotonic=lambda: next(ticks)))
        r = client(KEY).get(sim.url + "/api/v1/events", params={"limit": 250})
    assert r.status_code == 200
    assert slept == [pytest.approx(0.3, abs=0.01)]


def test_a_server_builds_its_event_tables_before_it_listens():
    from datasync_sim import dataset

    dataset._middles.cache_clear()
    with running():  # the first answer must not pay 0.5-1 s for the tables: the bounds do not count it
        assert dataset._middles.cache_info().currsize == 1


def test_concurrent_requests_overlap_their_latency(monkeypatch: pytest.MonkeyPatch):
    import threading
    import types

    from datasync_sim import server

    # Each answer's latency is slept at a barrier of four: the answers return only once all four requests
    # are in their latency at the same time, which a server that serialised them would never reach.
    overlap = threading.Barrier(4)
    slept: list[float] = []

    def sleep_together(seconds: float) -> None:
        slept.append(seconds)
        overlap.wait(timeout=60)  # a guard: a server that serialised latencies breaks the barrier

    monkeypatch.setattr(server, "time", types.SimpleNamespace(sleep=sleep_together, monotonic=time.monotonic))
    with running(latency_ms_per_event=2.0, events=3_000) as sim:  # 0.5 s per 250-event page
        done = []

        def fetch():
            done.append(client(KEY).get(sim.url + "/api/v1/events", params={"limit": 250}).status_code)

        threads = [threading.Thread(target=fetch) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert done == [200] * 4
    assert slept == [pytest.approx(0.5, abs=0.05)] * 4
