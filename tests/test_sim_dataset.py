"""The dataset: order, ties, fields, proportions, determinism, exact expected set, growth."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import Counter

import requests

from datasync_sim import SimServer, profile_config
from datasync_sim.config import NEWEST_TS_MS
from tests.fix_sim import KEY, client, events_page, read_all, running, ts_ms

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _key(e: dict) -> tuple[int, str]:
    return ts_ms(e["timestamp"]), e["id"]


def test_all_events_are_unique_and_ordered_by_ts_then_id_desc():
    with running(events=3_000) as sim:
        events = read_all(client(), sim.url, limit=700)
    keys = [_key(e) for e in events]
    assert len(events) == 3_000
    assert keys == sorted(keys, reverse=True)
    assert len({e["id"] for e in events}) == 3_000
    assert all(UUID_RE.fullmatch(e["id"]) for e in events)
    assert keys[0][0] == NEWEST_TS_MS


def test_ties_are_common_and_exact():
    with running(events=5_000) as sim:
        events = read_all(client(), sim.url, limit=5000)
    sizes = Counter(Counter(ts_ms(e["timestamp"]) for e in events).values())
    in_ties = sum(size * n for size, n in sizes.items() if size > 1)
    assert 0.06 < in_ties / 5_000 < 0.15
    assert set(sizes) - {1} <= {2, 3, 4, 5, 6, 7, 8}


def test_event_has_the_eight_fields_of_the_contract():
    with running() as sim:
        e = events_page(client(), sim.url, limit=1)["data"][0]
    assert list(e) == ["id", "sessionId", "userId", "type", "name", "properties", "timestamp", "session"]
    assert e["session"]["id"] == e["sessionId"]
    assert list(e["session"]) == ["id", "deviceType", "browser"]
    assert e["session"]["deviceType"] in {"mobile", "tablet", "desktop"}
    assert e["session"]["browser"] in {"Chrome", "Firefox", "Safari", "Edge"}
    assert re.fullmatch(r"event_[0-9a-z]{6}", e["name"])
    assert isinstance(e["properties"], dict)


def test_type_proportions_users_and_sessions_follow_the_contract():
    with running(events=20_000) as sim:
        events = read_all(client(), sim.url, limit=5000)
    share = {t: n / 20_000 for t, n in Counter(e["type"] for e in events).items()}
    expected = {"page_view": .35, "click": .25, "api_call": .10, "form_submit": .10,
                "scroll": .05, "purchase": .05, "error": .05, "video_play": .05}
    assert set(share) == set(expected)
    assert all(abs(share[t] - p) < 0.015 for t, p in expected.items())
    per_session = Counter(e["sessionId"] for e in events)
    assert len(per_session) == 400
    assert min(per_session.values()) >= 35 and max(per_session.values()) <= 65
    users = {e["userId"] for e in events}
    assert 300 < len(users) <= 3000
    span = ts_ms(events[0]["timestamp"]) - ts_ms(events[-1]["timestamp"])
    assert 29 * 86_400_000 < span <= 30 * 86_400_000


def test_timestamps_alternate_number_and_iso_string_by_page_position():
    with running() as sim:
        data = events_page(client(), sim.url, limit=9)["data"]
    kinds = [type(e["timestamp"]).__name__ for e in data]
    assert kinds == ["int", "str", "str"] * 3
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["timestamp"]) for e in data[1:3])
    assert all(len(str(e["timestamp"])) == 13 for e in data[::3])


def test_same_seed_same_data_on_two_servers_and_another_seed_differs():
    with running(events=1_500, seed=11) as a, running(events=1_500, seed=11) as b, \
            running(events=1_500, seed=12) as c:
        ea, eb, ec = (read_all(client(), s.url, limit=1000) for s in (a, b, c))
    assert ea == eb
    assert ea[0]["id"] != ec[0]["id"]


def test_first_event_is_stable_for_a_seed_at_full_size():
    with SimServer(profile_config("fast", seed=7)) as sim:  # 3M events: starting must stay instant
        first = events_page(client(), sim.url, limit=1)
    assert first["meta"]["total"] == 3_000_000
    assert first["data"][0]["id"] == "76ad33ab-e738-4fbf-b87d-bb4596dae1da"
    assert first["data"][0]["timestamp"] == NEWEST_TS_MS == 1769541612369


def test_expected_is_the_exact_set_served():
    with running(events=2_345) as sim:
        events = read_all(client(), sim.url, limit=1000)
        expected = requests.get(sim.url + "/__sim/expected", timeout=10).json()
    ids = sorted({e["id"] for e in events})
    assert expected == {
        "count": 2_345,
        "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
        "newest_ts": ts_ms(events[0]["timestamp"]),
        "oldest_ts": ts_ms(events[-1]["timestamp"]),
    }


def test_add_events_grows_the_top_and_expected_follows():
    with running(events=1_000) as sim:
        s = client()
        before = events_page(s, sim.url, limit=1)["data"][0]
        assert sim.add_events(30) == 1_030
        r = requests.post(sim.url + "/__sim/grow", params={"count": 20}, timeout=10)
        assert r.json() == {"added": 20, "total": 1_050}
        events = read_all(s, sim.url, limit=400)
        expected = requests.get(sim.url + "/__sim/expected", timeout=10).json()
        total = events_page(s, sim.url, limit=1)["meta"]["total"]
    keys = [_key(e) for e in events]
    assert len(events) == 1_050 == expected["count"] == total
    assert keys == sorted(keys, reverse=True)
    assert events[50] == {**before, "timestamp": events[50]["timestamp"]}  # 50 is no multiple of 3
    assert ts_ms(events[50]["timestamp"]) == before["timestamp"]
    assert expected["newest_ts"] == ts_ms(events[0]["timestamp"]) > before["timestamp"]
    assert expected["sha256"] == hashlib.sha256("\n".join(sorted(e["id"] for e in events)).encode()).hexdigest()


def test_damaged_ids_are_served_damaged_every_time_and_not_expected():
    with running(events=2_000, p_damaged_id=0.002) as sim:
        s = client()
        first = read_all(s, sim.url, limit=1000)
        second = read_all(s, sim.url, limit=300)
        expected = requests.get(sim.url + "/__sim/expected", timeout=10).json()
    damaged = [e["id"] for e in first if not UUID_RE.fullmatch(e["id"])]
    assert len(damaged) == 4
    assert [e["id"] for e in second if not UUID_RE.fullmatch(e["id"])] == damaged
    valid = sorted(e["id"] for e in first if UUID_RE.fullmatch(e["id"]))
    assert expected["count"] == 1_996
    assert expected["sha256"] == hashlib.sha256("\n".join(valid).encode()).hexdigest()
    for bad in damaged:
        try:
            uuid.UUID(bad)
            parsed = True
        except ValueError:
            parsed = False
        assert not parsed, bad


def test_key_is_accepted_in_any_valid_form():
    with running() as sim:
        assert client(KEY).get(sim.url + "/api/v1/events", timeout=10).status_code == 200
