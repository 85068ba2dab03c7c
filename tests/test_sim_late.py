"""Held-back events: late ones at old timestamps and new ones above the newest, shown on release."""

from __future__ import annotations

import hashlib

import pytest
import requests

from datasync_sim.config import NEWEST_TS_MS
from tests.fix_sim import client, events_page, read_all, release_late, running, stream_token, ts_ms

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def _sha(ids) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def _plain(event: dict) -> dict:
    """The event with its timestamp as epoch ms (the listing's form depends on the page position)."""
    return {**event, "timestamp": ts_ms(event["timestamp"])}


def _keys(events: list[dict]) -> list[tuple[int, str]]:
    return [(ts_ms(e["timestamp"]), e["id"]) for e in events]


@pytest.mark.parametrize(("where", "top", "middle"), [("top", 40, 0), ("middle", 0, 40), ("both", 20, 20)])
def test_late_events_are_hidden_everywhere_until_released_then_listed_at_their_old_timestamps(where, top, middle):
    with running(events=3_000, late_events=40, late_where=where) as sim:
        s = client()
        before = read_all(s, sim.url, limit=700)
        total_before = events_page(s, sim.url, limit=1)["meta"]["total"]
        expected_before = requests.get(sim.url + "/__sim/expected", timeout=60).json()
        answer = release_late(sim.url)
        again = release_late(sim.url)
        after = read_all(s, sim.url, limit=700)
        total_after = events_page(s, sim.url, limit=1)["meta"]["total"]
        expected_after = requests.get(sim.url + "/__sim/expected", timeout=60).json()
    late = {e["id"] for e in after} - {e["id"] for e in before}
    late_ts = sorted(ts for ts, eid in _keys(after) if eid in late)
    assert (answer, again) == ({"released": 40, "late": 40, "new": 0, "total": 3_040},
                               {"released": 0, "late": 0, "new": 0, "total": 3_040})
    assert (len(before), total_before, expected_before["count"]) == (3_000, 3_000, 3_000)
    assert (len(after), total_after, expected_after["count"]) == (3_040, 3_040, 3_040)
    assert [_plain(e) for e in after if e["id"] not in late] == [_plain(e) for e in before]
    assert _keys(after) == sorted(_keys(after), reverse=True)
    assert expected_after["sha256"] == _sha(e["id"] for e in after)
    assert expected_before["sha256"] == _sha(e["id"] for e in before)
    assert expected_after["newest_ts"] == expected_before["newest_ts"] == NEWEST_TS_MS
    assert sum(NEWEST_TS_MS - 30 * 60_000 <= ts < NEWEST_TS_MS for ts in late_ts) == top
    assert sum(NEWEST_TS_MS - 16 * DAY_MS <= ts <= NEWEST_TS_MS - 14 * DAY_MS for ts in late_ts) == middle


def test_new_events_appear_above_the_newest_on_release():
    with running(events=2_000, new_events=25) as sim:
        s = client()
        before = read_all(s, sim.url, limit=500)
        newest_before = requests.get(sim.url + "/__sim/expected", timeout=60).json()["newest_ts"]
        answer = release_late(sim.url)
        after = read_all(s, sim.url, limit=500)
        expected_after = requests.get(sim.url + "/__sim/expected", timeout=60).json()
    assert answer == {"released": 25, "late": 0, "new": 25, "total": 2_025}
    assert newest_before == ts_ms(before[0]["timestamp"]) == NEWEST_TS_MS
    assert [_plain(e) for e in after[25:]] == [_plain(e) for e in before]
    assert all(ts > NEWEST_TS_MS for ts, _ in _keys(after[:25]))
    assert _keys(after) == sorted(_keys(after), reverse=True)
    assert (expected_after["count"], expected_after["newest_ts"]) == (2_025, ts_ms(after[0]["timestamp"]))
    assert expected_after["sha256"] == _sha(e["id"] for e in after)


def test_a_cursor_issued_before_the_release_continues_after_its_position():
    with running(events=3_000, late_events=30, late_where="both", new_events=10) as sim:
        s = client()
        first = events_page(s, sim.url, limit=1_000)
        release_late(sim.url)
        rest = read_all(s, sim.url, limit=700, cursor=first["pagination"]["nextCursor"])
        full = read_all(s, sim.url, limit=700)
    last = first["data"][-1]["id"]
    cut = [e["id"] for e in full].index(last) + 1
    missed = {e["id"] for e in full} - {e["id"] for e in first["data"] + rest}
    assert [_plain(e) for e in rest] == [_plain(e) for e in full[cut:]]
    # the chain never sees what was released above its position: the new events and the top late ones
    assert len(missed) == 10 + 15
    assert all(ts_ms(e["timestamp"]) >= ts_ms(first["data"][-1]["timestamp"]) for e in full if e["id"] in missed)


def test_held_back_ids_are_unknown_to_the_feed_and_single_lookups_until_released():
    with running(events=1_500, late_events=12, late_where="middle") as released, \
            running(events=1_500, late_events=12, late_where="middle") as held:
        s = client()
        release_late(released.url)
        late = {e["id"] for e in read_all(s, released.url, limit=500)} - {e["id"] for e in read_all(s, held.url)}
        token = stream_token(s, held.url)
        feed_before = read_all(s, held.url, path=token["endpoint"], limit=500,
                               headers={"X-Stream-Token": token["token"]})
        lookups_before = {s.get(held.url + f"/api/v1/events/{eid}").status_code for eid in late}
        release_late(held.url)
        feed_after = read_all(s, held.url, path=token["endpoint"], limit=500,
                              headers={"X-Stream-Token": token["token"]})
        lookups_after = {s.get(held.url + f"/api/v1/events/{eid}").status_code for eid in late}
    assert len(late) == 12
    assert (len(feed_before), late & {e["id"] for e in feed_before}) == (1_500, set())
    assert {e["id"] for e in feed_after} - {e["id"] for e in feed_before} == late
    assert (lookups_before, lookups_after) == ({404}, {200})
