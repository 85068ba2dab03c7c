"""Whole events out of a body cut off mid-JSON: at every possible cut, exactly the events before it."""

from __future__ import annotations

import json

import orjson
import pytest

from ingest.api.truncated_body import whole_events_prefix

EVENTS = [
    {"id": "9f0c0d52-1111-4a4e-9b3e-000000000003", "timestamp": 1769541612369, "name": "event_a1b2c3",
     "properties": {"page": "/home", "nested": [1, {"x": "]}"}]}},
    {"id": "9f0c0d52-1111-4a4e-9b3e-000000000002", "timestamp": "2026-01-27T19:19:13.629Z",
     "name": "événement \u2713 \U0001f600", "properties": {}},
    {"id": "9f0c0d52-1111-4a4e-9b3e-000000000001", "timestamp": 1769541612000, "name": "event_zzzzzz",
     "properties": {"quote": "a \\\"b\\\" ,"}},
]
PAGINATION = {"limit": 3, "hasMore": True, "nextCursor": "eyJpZCI6IngifQ=="}


def body(**members) -> bytes:
    return json.dumps(members, ensure_ascii=False).encode()


WHOLE = body(data=EVENTS, pagination=PAGINATION, meta={"total": 3_000_000})


def test_every_cut_keeps_exactly_the_whole_events_before_it() -> None:
    texts = [json.dumps(e, ensure_ascii=False).encode() for e in EVENTS]
    data_ends = [WHOLE.index(text) + len(text) for text in texts]  # where each event's closing brace ends
    for cut in range(len(WHOLE)):
        got = whole_events_prefix(WHOLE[:cut])
        whole = sum(1 for end in data_ends if end <= cut)
        if whole == 0:
            assert got is None, cut
            continue
        assert got is not None, cut
        assert got["data"] == EVENTS[:whole], cut


def test_members_after_the_events_are_kept_while_whole() -> None:
    cut_in_meta = WHOLE[:WHOLE.index(b'"meta"') + 10]
    got = whole_events_prefix(cut_in_meta)
    assert got == {"data": EVENTS, "pagination": PAGINATION}
    cut_in_pagination = WHOLE[:WHOLE.index(b'"hasMore"')]
    assert whole_events_prefix(cut_in_pagination) == {"data": EVENTS}


def test_members_before_the_events_must_be_whole() -> None:
    meta_first = body(meta={"total": 3}, data=EVENTS)
    assert whole_events_prefix(meta_first[:-30]) == {"meta": {"total": 3}, "data": EVENTS[:2]}
    assert whole_events_prefix(meta_first[:8]) is None


@pytest.mark.parametrize("content", [
    b"", b"[1, 2", b'{"data": 5, "x"', b'{"data": [', b'{"data": []', b"\xff\xfe{", b'{"data": [{"id": 1},\xff  {"id"',
])
def test_nothing_to_salvage(content: bytes) -> None:
    assert whole_events_prefix(content) is None


def test_values_read_as_a_whole_body_would_be() -> None:
    cut = b'{"data": [{"id": "a", "v": NaN, "big": 123456789012345678901234567890}, {"id": "b", "v'
    got = whole_events_prefix(cut)
    assert got is not None
    # as tolerant_json reads a whole body: NaN as a string (jsonb has none), the long integer exact
    assert orjson.dumps(got["data"]) == b'[{"id":"a","v":"NaN","big":123456789012345678901234567890}]'
