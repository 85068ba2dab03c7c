"""Poison pages: one event per page that orjson refuses and a tolerant parser accepts; the id stays valid."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter

import orjson
import requests

from tests.fix_sim import client, running, stream_token

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
POISON_KEYS = {"note", "score", "ratio", "ref"}


def _walk(s, url: str, path: str = "/api/v1/events", headers: dict | None = None) -> list[tuple[bytes, dict]]:
    """Every page of a listing as (raw body, json.loads of it), checking Content-Length on the way."""
    pages, cursor = [], None
    while True:
        r = s.get(url + path, params={"limit": 100, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(r.content)
        page = json.loads(r.content)
        pages.append((r.content, page))
        cursor = page["pagination"]["nextCursor"]
        if not page["pagination"]["hasMore"]:
            return pages


def _rejected_by_orjson(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return True
    return False


def _poison(event: dict) -> str | None:
    found = POISON_KEYS & set(event["properties"])
    assert len(found) <= 1
    return found.pop() if found else None


def test_a_share_of_pages_carries_one_event_orjson_refuses_and_json_loads_keeps_every_id():
    with running(events=20_000, poison_rate=0.3) as sim:
        s = client()
        pages = _walk(s, sim.url)
        again = _walk(s, sim.url)
        exp = requests.get(sim.url + "/__sim/expected", timeout=60).json()
        stats = s.get(sim.url + "/__sim/stats").json()
    poisoned = [(body, page) for body, page in pages if _rejected_by_orjson(body)]
    kinds = Counter(k for _, page in poisoned for k in map(_poison, page["data"]) if k)
    ids = [e["id"] for _, page in pages for e in page["data"]]
    assert len(pages) == 200
    assert 40 <= len(poisoned) <= 80
    assert all(sum(_poison(e) is not None for e in page["data"]) == 1 for _, page in poisoned)
    assert sum(kinds.values()) == len(poisoned) and set(kinds) == POISON_KEYS
    assert stats["chaos"] == {"poison": 2 * len(poisoned)}
    values = [e["properties"][_poison(e)] for _, page in poisoned for e in page["data"] if _poison(e)]
    assert {"\ud83d", math.inf} <= set(values) and any(v != v for v in values) and 10**309 in values
    assert all(UUID_RE.fullmatch(i) for i in ids) and len(set(ids)) == 20_000
    assert (exp["count"], exp["sha256"]) == (20_000, hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest())
    # fixed per page: the same pages, the same events poisoned in the same way
    assert [_rejected_by_orjson(b) for b, _ in again] == [_rejected_by_orjson(b) for b, _ in pages]


def test_the_feed_pages_are_poisoned_too_and_clean_pages_parse_with_orjson():
    with running(events=5_000, poison_rate=0.5) as sim:
        s = client()
        token = stream_token(s, sim.url)
        pages = _walk(s, sim.url, token["endpoint"], {"X-Stream-Token": token["token"]})
    refused = [_rejected_by_orjson(body) for body, _ in pages]
    assert 10 <= sum(refused) <= 40
    assert all(orjson.loads(body) == page for (body, page), bad in zip(pages, refused, strict=True) if not bad)


def test_off_by_default():
    with running(events=3_000) as sim:
        pages = _walk(client(), sim.url)
    assert [_rejected_by_orjson(body) for body, _ in pages] == [False] * 30
