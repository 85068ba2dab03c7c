"""Cursors: continuation after (ts, id), forged and rebuilt cursors, tie boundaries, expiry, errors."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.fix_sim import SimClock, client, cursor, decode_cursor, events_page, read_all, running, ts_ms

ZERO_ID = "00000000-0000-0000-0000-000000000000"
ABOVE_ANY_ID = "~"  # sorts after every hex id


@pytest.fixture(scope="module")
def sim_and_events():
    with running(events=2_000, seed=3) as sim:
        yield sim, read_all(client(), sim.url, limit=5000)


def _keys(events: list[dict]) -> list[tuple[int, str]]:
    return [(ts_ms(e["timestamp"]), e["id"]) for e in events]


def _after(events, ts: int, eid: str) -> list[tuple[int, str]]:
    return [k for k in _keys(events) if k < (ts, eid)]


def _tie_group(events) -> list[tuple[int, str]]:
    counts = Counter(ts for ts, _ in _keys(events))
    ts = next(t for t, n in counts.items() if n >= 3)
    return [k for k in _keys(events) if k[0] == ts]


def test_chained_pages_equal_one_big_page_whatever_the_page_size(sim_and_events):
    sim, everything = sim_and_events
    for limit in (7, 64, 333):
        assert _keys(read_all(client(), sim.url, limit=limit)) == _keys(everything)


def test_next_cursor_is_base64_json_of_the_last_event_and_expires_after_the_ttl(sim_and_events):
    sim, _ = sim_and_events
    before = int(time.time() * 1000)
    page = events_page(client(), sim.url, limit=4)
    last = page["data"][-1]
    decoded = decode_cursor(page["pagination"]["nextCursor"])
    assert list(decoded) == ["id", "ts", "v", "exp"]
    assert (decoded["id"], decoded["ts"], decoded["v"]) == (last["id"], ts_ms(last["timestamp"]), 2)
    assert before + 3_600_000 <= decoded["exp"] <= int(time.time() * 1000) + 3_600_000  # fast: TTL 3600 s
    assert page["pagination"] == {"limit": 4, "hasMore": True, "nextCursor": page["pagination"]["nextCursor"],
                                  "cursorExpiresIn": 3600}


def test_forged_cursor_at_any_event_continues_strictly_after_it(sim_and_events):
    sim, everything = sim_and_events
    s = client()
    for i in (0, 1, 2, 500, 1998):
        ts, eid = _keys(everything)[i]
        page = events_page(s, sim.url, limit=5, cursor=cursor(ts, eid))
        assert _keys(page["data"]) == _keys(everything)[i + 1:i + 6]


def test_forged_cursor_inside_a_tie_group_splits_it_by_id(sim_and_events):
    sim, everything = sim_and_events
    s = client()
    group = _tie_group(everything)
    ts = group[0][0]
    first = _keys(everything).index(group[0])
    # ids above every member: the whole group follows; the zero id: none of it
    assert _keys(events_page(s, sim.url, limit=len(group), cursor=cursor(ts, ABOVE_ANY_ID))["data"]) == group
    assert _keys(events_page(s, sim.url, limit=1, cursor=cursor(ts, ZERO_ID))["data"]) == \
        [_keys(everything)[first + len(group)]]
    # between the first and second member
    between = group[0][1][:-1] + "0" if group[0][1][-1] != "0" else group[1][1]
    got = _keys(events_page(s, sim.url, limit=len(group), cursor=cursor(ts, between))["data"])
    assert got == _after(everything, ts, between)[:len(group)]


def test_partitions_built_on_forged_cursors_cover_everything_exactly(sim_and_events):
    sim, everything = sim_and_events
    s = client()
    keys = _keys(everything)
    group = _tie_group(everything)
    bounds = [keys[0][0] + 1, group[0][0], keys[700][0], keys[1400][0]]  # one boundary inside a tie
    got: list[tuple[int, str]] = []
    for hi, lo in zip(bounds, [*bounds[1:], None], strict=True):
        c = cursor(hi, ABOVE_ANY_ID)  # everything with ts < hi, plus ts == hi
        part = []
        while True:
            page = events_page(s, sim.url, limit=100, cursor=c)
            part += [k for k in _keys(page["data"]) if lo is None or k[0] > lo]
            if not page["pagination"]["hasMore"] or (lo is not None and ts_ms(page["data"][-1]["timestamp"]) <= lo):
                break
            c = page["pagination"]["nextCursor"]
        got += part
    assert got == keys


def test_cursor_above_the_newest_gives_page_one_and_below_the_oldest_gives_the_end(sim_and_events):
    sim, everything = sim_and_events
    s = client()
    newest, oldest = _keys(everything)[0][0], _keys(everything)[-1][0]
    assert _keys(events_page(s, sim.url, limit=3, cursor=cursor(newest + 10_000, ZERO_ID))["data"]) == \
        _keys(everything)[:3]
    end = events_page(s, sim.url, limit=3, cursor=cursor(oldest - 1, ABOVE_ANY_ID))
    assert (end["data"], end["pagination"]["hasMore"], end["pagination"]["nextCursor"]) == ([], False, None)
    assert end["meta"]["returned"] == 0


def test_expired_cursor_says_how_many_minutes_ago():
    with running() as sim:
        r = client().get(sim.url + "/api/v1/events",
                         params={"cursor": cursor(1769541612369, ZERO_ID, exp=int(time.time() * 1000) - 200_000)})
    assert r.status_code == 400
    assert r.json() == {"error": "Bad Request", "message": "Cursor expired 3 minute(s) ago", "code": "CURSOR_EXPIRED"}


def test_issued_cursor_expires_after_the_configured_ttl():
    clock = SimClock()
    with running(clock=clock, cursor_ttl_s=0.3) as sim:
        s = client()
        page = events_page(s, sim.url, limit=2)
        assert page["pagination"]["cursorExpiresIn"] == 0
        clock.advance(0.3)
        last_moment = s.get(sim.url + "/api/v1/events", params={"cursor": page["pagination"]["nextCursor"]})
        clock.advance(0.001)
        r = s.get(sim.url + "/api/v1/events", params={"cursor": page["pagination"]["nextCursor"]})
    assert last_moment.status_code == 200
    assert (r.status_code, r.json()["code"], r.json()["message"]) == (
        400, "CURSOR_EXPIRED", "Cursor expired 0 minute(s) ago")


@pytest.mark.parametrize("bad", ["not-base64!", "eyJ4IjoxfQ==", "bnVsbA==", cursor(1, ZERO_ID)[:-6]])
def test_malformed_cursor_is_400_or_502_when_switched(bad):
    with running() as sim, running(bad_cursor_status=502) as early:
        r = client().get(sim.url + "/api/v1/events", params={"cursor": bad})
        r_early = client().get(early.url + "/api/v1/events", params={"cursor": bad})
    assert (r.status_code, r.json()) == (400, {"error": "Bad Request", "message": "Invalid cursor format",
                                               "code": "CURSOR_INVALID_FORMAT"})
    assert (r_early.status_code, r_early.headers["Server"]) == (502, "awselb/2.0")


def test_reject_forged_cursors_accepts_only_issued_ones():
    with running(reject_forged_cursors=True) as sim:
        s = client()
        page = events_page(s, sim.url, limit=2)
        issued = page["pagination"]["nextCursor"]
        ok = s.get(sim.url + "/api/v1/events", params={"cursor": issued, "limit": 2})
        d = decode_cursor(issued)
        rebuilt = s.get(sim.url + "/api/v1/events", params={"cursor": cursor(d["ts"], d["id"], d["exp"] + 1)})
    assert ok.status_code == 200
    assert ok.json()["data"][0]["id"] != page["data"][0]["id"]
    assert (rebuilt.status_code, rebuilt.json()["code"]) == (400, "CURSOR_INVALID_FORMAT")


def test_forged_cursors_are_accepted_by_default():
    with running() as sim:
        r = client().get(sim.url + "/api/v1/events", params={"cursor": cursor(1769000000000, ZERO_ID), "limit": 1})
    assert r.status_code == 200
    assert ts_ms(r.json()["data"][0]["timestamp"]) < 1769000000000
