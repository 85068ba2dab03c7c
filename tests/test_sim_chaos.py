"""Chaos knobs: each misbehaviour on demand, the same way for the same seed."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
import requests

from tests.fix_sim import KEY, client, events_page, running, stream_token, ts_ms


def _instant(value) -> int:
    """Epoch ms of any timestamp variant the simulator serves."""
    if isinstance(value, int):
        return value * 1000 if value < 10**11 else value
    text = value.strip().replace("\u200b", "")
    if text.isdigit():
        return int(text)
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_5xx_come_as_express_500_or_load_balancer_502_503_504():
    with running(p_5xx=1.0) as sim:
        s = client()
        answers = [s.get(sim.url + "/api/v1/events") for _ in range(30)]
    by_status = {r.status_code: r for r in answers}
    assert set(by_status) == {500, 502, 503, 504}
    assert by_status[500].json() == {"error": "Internal Server Error", "message": "An unexpected error occurred",
                                     "code": "INTERNAL_ERROR"}
    for status in (502, 503, 504):
        r = by_status[status]
        assert (r.headers["Server"], r.headers["Content-Type"]) == ("awselb/2.0", "text/html")
        assert f"<title>{status} " in r.text


def test_truncated_body_is_a_200_cut_mid_json_with_matching_length():
    with running(p_truncate=1.0) as sim, running() as ref:
        r = client().get(sim.url + "/api/v1/events", params={"limit": 50})
        whole = client().get(ref.url + "/api/v1/events", params={"limit": 50})
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(r.content) < len(whole.content)
    assert whole.content.startswith(r.content[:len(r.content) - 200][:40])
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(r.content)


def test_reset_closes_the_connection_without_an_answer():
    with running(p_reset=1.0) as sim:
        with pytest.raises(requests.ConnectionError):
            client().get(sim.url + "/api/v1/events", timeout=5)
        stats = requests.get(sim.url + "/__sim/stats").json()
    assert stats["requests"]["events"] == {"reset": 1}


def test_slow_answer_comes_after_the_client_timeout():
    # 30 s against 0.3 s: the client's timeout fires first even if a loaded machine stalls it for seconds.
    with running(p_slow=1.0, slow_seconds=30.0) as sim, pytest.raises(requests.ReadTimeout):
        client().get(sim.url + "/api/v1/events", timeout=0.3)


def test_no_pagination_drops_or_damages_the_pagination_object():
    with running(p_no_pagination=1.0) as sim:
        s = client()
        pages = [events_page(s, sim.url, limit=3) for _ in range(12)]
    forms = {repr(p.get("pagination", "missing")) for p in pages}
    assert forms == {"'missing'", "None", "{}"}
    assert all(len(p["data"]) == 3 and p["meta"]["returned"] == 3 for p in pages)


def test_missing_fields_are_flagged_and_never_the_id():
    with running(p_missing_fields=1.0) as sim, running() as ref:
        r = client().get(sim.url + "/api/v1/events", params={"limit": 200})
        whole = events_page(client(), ref.url, limit=200)["data"]
    data = r.json()["data"]
    assert r.headers["X-Chaos-Applied"] == "missingFields"
    damaged = [i for i, e in enumerate(data) if len(e) < 8]
    assert len(damaged) == 4
    assert [e["id"] for e in data] == [e["id"] for e in whole]
    for i in damaged:
        assert {k: v for k, v in whole[i].items() if k in data[i]} == data[i]
        assert len(set(whole[i]) - set(data[i])) == 1


def test_timestamp_variants_are_the_same_instant():
    with running(p_ts_variant=1.0, events=5_000) as sim, running(events=5_000) as ref:
        got = events_page(client(), sim.url, limit=5000)["data"]
        whole = events_page(client(), ref.url, limit=5000)["data"]
    changed = [(a["timestamp"], b["timestamp"]) for a, b in zip(got, whole, strict=True) if a != b]
    assert 50 <= len(changed) <= 100
    assert all(_instant(a) == ts_ms(b) for a, b in changed)
    kinds = {("offset" if "+" in a or a.count("-") > 2 else "space" if a != a.strip() else
              "zero-width" if "\u200b" in a else "digits") for a, _ in changed if isinstance(a, str)}
    assert kinds == {"offset", "space", "zero-width", "digits"}


def test_replay_repeats_the_end_of_the_previous_page_first():
    with running(p_replay=1.0) as sim, running() as ref:
        s = client()
        first = events_page(s, sim.url, limit=20)
        second = events_page(s, sim.url, limit=20, cursor=first["pagination"]["nextCursor"])
        truth = events_page(client(), ref.url, limit=40)["data"]
    assert [e["id"] for e in first["data"]] == [e["id"] for e in truth[:20]]
    k = len(second["data"]) - 20
    assert 1 <= k <= 3
    assert [e["id"] for e in second["data"]] == [e["id"] for e in truth[20 - k:40]]


def test_chaos_applies_to_the_feed_too():
    with running(p_missing_fields=1.0) as sim:
        s = client()
        token = stream_token(s, sim.url)
        r = s.get(sim.url + token["endpoint"], params={"limit": 100}, headers={"X-Stream-Token": token["token"]})
    assert r.headers["X-Chaos-Applied"] == "missingFields"


def test_bulk_is_flaky_when_asked():
    with running(p_bulk_500=1.0) as sim:
        r = client().post(sim.url + "/api/v1/events/bulk", json={"ids": []})
    assert (r.status_code, r.json()["code"]) == (500, "INTERNAL_ERROR")


def test_the_same_seed_misbehaves_the_same_way():
    outcomes = []
    for _ in range(2):
        with running("chaos", slow_seconds=0.2, seed=5) as sim:
            s = requests.Session()
            seq = []
            for _ in range(40):
                try:
                    r = s.get(sim.url + "/api/v1/events", params={"limit": 30}, headers={"X-API-Key": KEY})
                    seq.append((r.status_code, len(r.content), r.headers.get("X-Chaos-Applied")))
                except requests.ConnectionError:
                    seq.append(("reset", 0, None))
                    s = requests.Session()
        outcomes.append(seq)
    assert outcomes[0] == outcomes[1]
    assert {o[0] for o in outcomes[0]} >= {200, "reset"}
