"""The chain walker against a fake source: where a partition ends, what it keeps.

No HTTP, no database: a source serving a fixed list of events in the API's (ts DESC, id DESC) order,
with cursors in the API's format, so each test reads as a small protocol story.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable

import pytest

from ingest.client import Envelope
from ingest.cursors import build_cursor, decode_cursor
from ingest.errors import CursorExpired, FatalApiError
from ingest.pages import PageCommit
from ingest.partitions import Partition, Plan
from ingest.retry import RetryPolicy
from ingest.retry_loop import RetryLoop
from ingest.stats import Stats
from ingest.throttle import Throttle
from ingest.walker import MAX_REBUILDS_IN_A_ROW, ChainWalker

BASE_MS = 1769541612369  # 2026-01-27T19:20:12.369Z


def events(count: int, step_ms: int = 1000) -> list[dict]:
    """`count` events, newest first, one every `step_ms`."""
    return [{"id": str(uuid.UUID(int=count - i)), "timestamp": BASE_MS - i * step_ms, "type": "click"}
            for i in range(count)]


class ListSource:
    """Serves `items` page by page like /api/v1/events; `render` changes how an event is sent."""

    kind = "documented"
    windowed = False

    def __init__(self, items: list[dict], page_size: int, render: Callable[[dict], dict] = dict) -> None:
        self.items = items
        self.page_size = page_size
        self.render = render
        self.cursors: list[str | None] = []  # every cursor asked for, in order
        self.expire: Callable[[str | None], bool] = lambda cursor: False

    def page(self, cursor: str | None, lo_ms: int | None, hi_ms: int | None, limit: int | None = None) -> Envelope:
        self.cursors.append(cursor)
        if self.expire(cursor):
            raise CursorExpired("HTTP 400 CURSOR_EXPIRED")
        start = 0
        if cursor is not None:
            ts, eid = decode_cursor(cursor)
            start = next((i for i, e in enumerate(self.items) if (e["timestamp"], e["id"]) < (ts, eid)),
                         len(self.items))
        chunk = self.items[start:start + self.page_size]
        more = start + self.page_size < len(self.items)
        last = chunk[-1] if chunk else None
        next_cursor = build_cursor(last["timestamp"], last["id"]) if more and last else None
        return Envelope([self.render(e) for e in chunk], more, next_cursor, len(self.items))


def walk(source: ListSource, partition: Partition) -> list[PageCommit]:
    """Run one fetcher over `partition` alone; the pages it handed to the writer."""
    pages: queue.Queue = queue.Queue()
    plan = Plan([partition], None)
    retry = RetryLoop(Throttle("test"), RetryPolicy(max_attempts=2), Stats(), threading.Event())
    ChainWalker(source, retry, plan, pages, lambda: True).run(partition)
    out = []
    while not pages.empty():
        out.append(pages.get())
    return out


def stored_ids(pages: list[PageCommit]) -> set[str]:
    return {line.split(b"\t", 1)[0].decode() for page in pages for line in page.lines}


def test_a_partition_walks_to_its_lower_bound_and_ends_on_the_page_that_passes_it() -> None:
    items = events(100)
    source = ListSource(items, page_size=30)
    lo = items[49]["timestamp"]  # the partition holds the 50 newest events
    pages = walk(source, Partition(1, lo, None))
    assert [p.last for p in pages] == [False, True]
    assert source.cursors[0] is None and len(source.cursors) == 2
    assert {e["id"] for e in items[:50]} <= stored_ids(pages)


@pytest.mark.parametrize("form", [
    lambda ms: "2026-01-27",  # date only: midnight, hours below its true place
    lambda ms: "2026-01-27T19",  # hour only
    lambda ms: "2026-01-27T19:19:13.629z",  # lowercase z
    lambda ms: float(ms),  # a float of epoch ms
    lambda ms: "not a time",
], ids=["date-only", "hour-only", "lowercase-z", "float-ms", "garbage"])
def test_a_timestamp_that_parses_low_does_not_end_the_partition(form: Callable[[int], object]) -> None:
    items = events(60, step_ms=10)
    odd_id = items[5]["id"]  # near the top of the first page

    def render(event: dict) -> dict:
        return {**event, "timestamp": form(event["timestamp"])} if event["id"] == odd_id else dict(event)

    lo = items[39]["timestamp"]
    pages = walk(ListSource(items, page_size=20, render=render), Partition(1, lo, None))
    assert {e["id"] for e in items[:40]} <= stored_ids(pages)
    assert pages[-1].last


def test_a_built_start_cursor_begins_exactly_at_the_upper_bound() -> None:
    items = events(50)
    hi = items[10]["timestamp"]
    source = ListSource(items, page_size=100)
    pages = walk(source, Partition(1, None, hi))
    assert decode_cursor(source.cursors[0]) == (hi, "00000000-0000-0000-0000-000000000000")
    assert stored_ids(pages) == {e["id"] for e in items[11:]}  # [lo, hi): the event at hi is above


def test_an_expired_cursor_is_rebuilt_from_the_last_position() -> None:
    items = events(50)
    source = ListSource(items, page_size=20)
    served = {"first": True}

    def expire_once(cursor: str | None) -> bool:
        if cursor is not None and served["first"]:
            served["first"] = False
            return True
        return False

    source.expire = expire_once
    pages = walk(source, Partition(1, None, None))
    assert stored_ids(pages) == {e["id"] for e in items}
    assert decode_cursor(source.cursors[2]) == decode_cursor(source.cursors[1])  # same position, new exp


def test_a_server_that_calls_every_rebuilt_cursor_expired_ends_the_run() -> None:
    source = ListSource(events(50), page_size=20)
    source.expire = lambda cursor: cursor is not None
    with pytest.raises(FatalApiError, match="cursors in a row expired"):
        walk(source, Partition(1, None, None))
    assert len(source.cursors) == 1 + MAX_REBUILDS_IN_A_ROW + 1


def test_the_top_page_names_the_newest_event() -> None:
    items = events(30)
    pages = walk(ListSource(items, page_size=10), Partition(1, None, None))
    assert [p.newest for p in pages] == [(items[0]["timestamp"], items[0]["id"]), None, None]
