"""The chain walker against a fake source: where a partition ends, what it keeps.

No HTTP, no database: a source serving a fixed list of events in the API's (ts DESC, id DESC) order,
with cursors in the API's format, so each test reads as a small protocol story.
"""

from __future__ import annotations

import itertools
import queue
import threading
import uuid
from collections.abc import Callable

import pytest

from ingest.api.client import Envelope
from ingest.api.cursors import ZERO_ID, build_cursor, decode_cursor
from ingest.api.retry_policy import RetryPolicy
from ingest.budgets.answer_timeout import LEARNED_AFTER, MIN_WAIT_S, AnswerTimer
from ingest.budgets.budget import Budget
from ingest.budgets.family import Family
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import Throttle
from ingest.errors import (
    AnswerTimedOut,
    BuiltCursorsRefused,
    CursorExpired,
    CursorRejected,
    FatalApiError,
    HandedBack,
    RepeatedCursor,
)
from ingest.plan.partitions import MIN_SPLIT_PAGES, Partition, Plan
from ingest.plan.walker import MAX_REBUILDS_IN_A_ROW, ChainWalker
from ingest.stats import Stats
from ingest.store.page_commit import PageCommit

BASE_MS = 1769541612369  # 2026-01-27T19:20:12.369Z
# The server's clock when the fake source issues a cursor, and when the walker builds one: fixed, so no
# test reads the wall clock, and a rebuilt cursor never equals an issued one by landing in the same ms.
ISSUED_AT_MS = BASE_MS + 60_000
REBUILT_AT_MS = BASE_MS + 120_000


def events(count: int, step_ms: int = 1000) -> list[dict]:
    """`count` events, newest first, one every `step_ms`."""
    return [{"id": str(uuid.UUID(int=count - i)), "timestamp": BASE_MS - i * step_ms, "type": "click"}
            for i in range(count)]


class ListSource:
    """Serves `items` page by page like /api/v1/events; `render` changes how an event is sent.

    Hooks for the protocol's odd turns: `expire(cursor)` answers CURSOR_EXPIRED, `reject(cursor)` refuses a
    cursor (the API's 400 CURSOR_INVALID_FORMAT), `during(cursor)` runs while the request is in flight,
    `lose_pagination(cursor)` answers with the events but a damaged pagination object, `cut_off(cursor)`
    with the whole events of a body cut off after that many (None: not cut).
    """

    kind = "documented"
    windowed = False

    def __init__(self, items: list[dict], page_size: int, render: Callable[[dict], dict] = dict) -> None:
        self.items = items
        self.page_size = page_size
        self.render = render
        self.cursors: list[str | None] = []  # every cursor asked for, in order
        self.issued: set[str] = set()  # every next cursor this source handed out
        self.expire: Callable[[str | None], bool] = lambda cursor: False
        self.reject: Callable[[str | None], bool] = lambda cursor: False
        self.during: Callable[[str | None], None] = lambda cursor: None
        self.lose_pagination: Callable[[str | None], bool] = lambda cursor: False
        self.cut_off: Callable[[str | None], int | None] = lambda cursor: None  # whole events before the cut
        self.untils: list[int | None] = []  # every hi_ms asked for, in order
        self.hold: Callable[[str | None], bool] = lambda cursor: False  # no answer within the read timeout
        self.read_timeouts: list[float | None] = []  # every read timeout asked for, in order

    def window(self, lo_ms: int | None, hi_ms: int | None) -> list[dict]:
        """The events the request may see: all of them (the documented endpoint ignores since/until)."""
        return self.items

    def page(self, cursor: str | None, lo_ms: int | None, hi_ms: int | None, limit: int | None = None,
             read_timeout_s: float | None = None) -> Envelope:
        self.cursors.append(cursor)
        self.untils.append(hi_ms)
        self.read_timeouts.append(read_timeout_s)
        if self.hold(cursor):
            raise AnswerTimedOut("timed out: ReadTimeout")
        if self.expire(cursor):
            raise CursorExpired("HTTP 400 CURSOR_EXPIRED")
        if self.reject(cursor):
            raise CursorRejected("HTTP 400 CURSOR_INVALID_FORMAT")
        self.during(cursor)
        items = self.window(lo_ms, hi_ms)
        start = 0
        if cursor is not None:
            ts, eid = decode_cursor(cursor)
            start = next((i for i, e in enumerate(items) if (e["timestamp"], e["id"]) < (ts, eid)), len(items))
        chunk = items[start:start + self.page_size]
        more = start + self.page_size < len(items)
        last = chunk[-1] if chunk else None
        rendered = [self.render(e) for e in chunk]
        whole = self.cut_off(cursor)
        if whole is not None:
            return Envelope(rendered[:whole], True, None, None, pagination_damaged=True, truncated=True)
        if more and self.lose_pagination(cursor):
            return Envelope(rendered, True, None, len(self.items), pagination_damaged=True)
        next_cursor = build_cursor(last["timestamp"], last["id"], now_ms=ISSUED_AT_MS) if more and last else None
        if next_cursor is not None:
            self.issued.add(next_cursor)
        return Envelope(rendered, more, next_cursor, len(self.items))


class WindowSource(ListSource):
    """Like the feed: cuts [since, until] on the server, `until` inclusive (the side that risks doubles)."""

    kind = "feed"
    windowed = True

    def window(self, lo_ms: int | None, hi_ms: int | None) -> list[dict]:
        return [e for e in self.items if (lo_ms is None or e["timestamp"] >= lo_ms)
                and (hi_ms is None or e["timestamp"] <= hi_ms)]


def walk(source: ListSource, partition: Partition, plan: Plan | None = None,
         handed: list[PageCommit] | None = None, hand_back: Callable[[int], bool] = lambda pid: False,
         answers: AnswerTimer | None = None, clock: Callable[[], float] = lambda: 0.0) -> list[PageCommit]:
    """Run one fetcher over `partition` (alone unless `plan` says otherwise); the pages it handed to the writer.

    `handed` collects the pages too, for a test that expects the walk to raise.
    """
    pages: queue.Queue = queue.Queue()
    plan = plan or Plan([partition], None)
    retry = RetryLoop(Throttle("test", answers=answers), RetryPolicy(max_attempts=2), Stats(), threading.Event())
    out = [] if handed is None else handed
    try:
        family = Family("test", [Budget("test", "header", source, retry)])
        ChainWalker(family, plan, pages, lambda: True, server_now_ms=lambda: REBUILT_AT_MS,
                    hand_back=hand_back, clock=clock).run(partition)
    finally:
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


class StuckSource(ListSource):
    """A server stuck on page one: whatever the cursor, it answers the first page again."""

    def page(self, cursor: str | None, lo_ms: int | None, hi_ms: int | None, limit: int | None = None,
             read_timeout_s: float | None = None) -> Envelope:
        answer = super().page(None, lo_ms, hi_ms, limit)
        self.cursors[-1] = cursor
        return answer


def test_a_server_that_repeats_a_cursor_stops_the_walk_instead_of_looping() -> None:
    items = events(50)
    source = StuckSource(items, page_size=20)
    handed: list[PageCommit] = []
    with pytest.raises(RepeatedCursor, match="repeated cursor"):
        walk(source, Partition(1, None, None), handed=handed)
    repeated = source.cursors[1]
    assert (source.cursors, decode_cursor(repeated)) == ([None, repeated], (items[19]["timestamp"], items[19]["id"]))
    assert [(p.next_cursor, p.last) for p in handed] == [(repeated, False)]  # the repeat is not handed on


def test_a_split_landing_while_a_request_is_in_flight_ends_the_walk_at_the_raised_bound() -> None:
    items = events(100)
    lo, middle = items[79]["timestamp"], items[30]["timestamp"]
    source = ListSource(items, page_size=20)
    partition = Partition(1, lo, None)
    plan = Plan([partition], None)
    claims: list[tuple[int, int | None]] = []
    claim = plan.claim_done

    def recorded_claim(partition_id: int, lower_bound_used: int | None) -> bool:
        claims.append((partition_id, lower_bound_used))
        return claim(partition_id, lower_bound_used)

    plan.claim_done = recorded_claim  # type: ignore[method-assign]

    def split_while_fetching_page_two(cursor: str | None) -> None:
        if cursor is not None and not claims and len(plan.partitions) == 1:
            plan.apply_split(1, middle, Partition(2, lo, middle))  # committed by the scheduler meanwhile

    source.during = split_while_fetching_page_two
    pages = walk(source, partition, plan)
    # PageCommit two (items 20-39) ends below the raised bound: the walk ends there, claiming the bound it read
    # after the answer, without a third request for a range that is now partition 2's.
    assert (len(source.cursors), [p.last for p in pages], claims) == (2, [False, True], [(1, middle)])
    assert (plan.partitions[1].done, plan.partitions[1].lo_ms) == (True, middle)
    assert (plan.partitions[2].done, plan.partitions[2].lo_ms, plan.partitions[2].hi_ms) == (False, lo, middle)
    assert stored_ids(pages) == {e["id"] for e in items[:40]}  # everything at or above the raised bound, and more


def test_a_fallback_opening_the_bound_just_before_the_claim_keeps_the_walk_going() -> None:
    items = events(100)
    lo = items[29]["timestamp"]
    source = ListSource(items, page_size=20)
    top = Partition(1, lo, None)
    plan = Plan([top, Partition(2, None, lo)], None)  # partition 2: the API refuses its built start cursor
    claims: list[tuple[int, int | None]] = []
    claim = plan.claim_done

    def fallback_then_claim(partition_id: int, lower_bound_used: int | None) -> bool:
        if not claims:
            plan.cover_with_server_cursors(2)  # the scheduler folds 2 into the top between read and claim
        claims.append((partition_id, lower_bound_used))
        return claim(partition_id, lower_bound_used)

    plan.claim_done = fallback_then_claim  # type: ignore[method-assign]
    pages = walk(source, top, plan)
    # The page that passed the old bound is not the last: the top walks on to the oldest event.
    assert (claims, [p.last for p in pages]) == ([(1, lo), (1, None)], [False, False, False, False, True])
    assert (plan.partitions[1].lo_ms, plan.partitions[1].done) == (None, True)
    assert stored_ids(pages) == {e["id"] for e in items}


def test_a_refused_built_cursor_on_a_bounded_partition_hands_the_range_to_the_scheduler() -> None:
    items = events(50)
    hi = items[10]["timestamp"]
    source = ListSource(items, page_size=20)
    source.reject = lambda cursor: cursor is not None and cursor not in source.issued  # it refuses built cursors
    handed: list[PageCommit] = []
    with pytest.raises(BuiltCursorsRefused, match="partition 1"):
        walk(source, Partition(1, None, hi), handed=handed)
    assert (len(source.cursors), decode_cursor(source.cursors[0]), handed) == (1, (hi, ZERO_ID), [])


def test_a_refused_rebuilt_cursor_on_the_open_top_partition_restarts_it_from_the_top() -> None:
    items = events(50)
    lo = items[44]["timestamp"]
    source = ListSource(items, page_size=20)
    source.reject = lambda cursor: cursor is not None and cursor not in source.issued
    first_use = {"expired": False}

    def expire_the_first_server_cursor(cursor: str | None) -> bool:
        if cursor is not None and cursor in source.issued and not first_use["expired"]:
            first_use["expired"] = True
            return True
        return False

    source.expire = expire_the_first_server_cursor
    pages = walk(source, Partition(1, lo, None))
    issued, rebuilt = source.cursors[1], source.cursors[2]
    assert decode_cursor(rebuilt) == decode_cursor(issued) and rebuilt not in source.issued
    assert source.cursors == [None, issued, rebuilt, None, issued, source.cursors[5]]
    assert [p.last for p in pages] == [False, False, False, True]  # page one twice, then on to the bound
    assert stored_ids(pages) == {e["id"] for e in items}


def test_a_stored_cursor_of_another_endpoint_is_rebuilt_from_the_stored_position() -> None:
    items = events(60)
    pos = (items[19]["timestamp"], items[19]["id"])  # committed after the first page, by the feed before a restart
    foreign = "a cursor the feed issued"
    source = ListSource(items, page_size=20)
    source.reject = lambda cursor: cursor == foreign
    # read from a checkpoint: which endpoint issued the cursor is not known (cursor_kind None)
    stored = Partition(1, None, None, cursor=foreign, pos_ms=pos[0], pos_id=pos[1], cursor_kind=None)
    pages = walk(source, stored)
    assert (source.cursors[0], decode_cursor(source.cursors[1])) == (foreign, pos)
    assert None not in source.cursors  # never restarted from the top
    assert stored_ids(pages) == {e["id"] for e in items[20:]}
    assert [p.last for p in pages] == [False, True]


def test_a_partial_first_page_does_not_narrow_the_split_width() -> None:
    items = events(60, step_ms=1_000)
    tail = items[54]  # resumed near its end: the chain's first page is its last, 5 events of a page of 20
    source = ListSource(items, page_size=20)
    resumed = Partition(1, None, None, pos_ms=tail["timestamp"], pos_id=tail["id"])
    plan = Plan([resumed], None)  # resumed from a plan made without a probe: the density is unknown
    pages = walk(source, resumed, plan)
    assert (len(pages[0].lines), pages[0].last) == (5, True)
    # Learning nothing (0) or the width of MIN_SPLIT_PAGES full pages (2 x 20 events, 1 s apart) is right.
    assert plan.min_split_ms in (0, MIN_SPLIT_PAGES * 20 * 1_000)


def test_a_chain_hands_its_partition_back_between_pages_and_the_next_resumes_at_its_position() -> None:
    """A budget facing a long wait gives its partition away: no page is fetched twice, none is skipped."""
    items = events(100)
    partition = Partition(1, None, None)
    plan = Plan([partition], None)
    stalled = ListSource(items, page_size=30)
    handed: list[PageCommit] = []
    with pytest.raises(HandedBack):
        walk(stalled, partition, plan, handed, hand_back=lambda pid: len(stalled.cursors) == 2)
    assert len(handed) == 2 and not partition.done
    other = ListSource(items, page_size=30)  # another budget of the same endpoint
    rest = walk(other, partition, plan)
    assert other.cursors[0] in stalled.issued  # the cursor the stalled chain was given last
    assert stored_ids(handed) | stored_ids(rest) == {e["id"] for e in items}
    assert len(stalled.cursors) + len(other.cursors) == 4  # 100 events in pages of 30: four requests in all
    assert partition.done


def test_a_full_page_without_pagination_is_kept_and_the_chain_goes_on_after_its_last_event() -> None:
    """The documented endpoint: one request per page, as if the server had sent its cursor."""
    items = events(100)
    source = ListSource(items, page_size=30)
    source.lose_pagination = lambda cursor: cursor is None  # the first page loses its next cursor
    pages = walk(source, Partition(1, None, None))
    assert decode_cursor(source.cursors[1]) == (items[29]["timestamp"], items[29]["id"])
    assert source.cursors[1] not in source.issued  # built by the walker
    assert len(source.cursors) == 4 and [p.last for p in pages] == [False, False, False, True]
    assert stored_ids(pages) == {e["id"] for e in items}


def test_on_the_feed_a_page_without_pagination_is_followed_by_until_not_by_a_built_cursor() -> None:
    items = events(100, step_ms=1)
    items[30]["timestamp"] = items[29]["timestamp"]  # a tie across the page boundary
    items.sort(key=lambda e: (e["timestamp"], e["id"]), reverse=True)
    source = WindowSource(items, page_size=30)
    source.lose_pagination = lambda cursor: cursor is None and len(source.cursors) == 1
    lo = items[89]["timestamp"]
    pages = walk(source, Partition(1, lo, None))
    assert source.cursors[1] is None and source.untils[1] == items[29]["timestamp"] + 1
    assert {e["id"] for e in items[:90]} <= stored_ids(pages)
    assert len(source.cursors) == 4  # pages of 30, the second one starting a tie early: one request each


def test_a_cut_off_body_is_kept_to_its_last_whole_event_and_the_chain_goes_on_after_it() -> None:
    items = events(100)
    source = ListSource(items, page_size=30)
    source.cut_off = lambda cursor: 12 if cursor is None else None
    pages = walk(source, Partition(1, None, None))
    assert decode_cursor(source.cursors[1]) == (items[11]["timestamp"], items[11]["id"])
    assert stored_ids(pages) == {e["id"] for e in items}
    assert len(source.cursors) == 4  # 12, then 88 in pages of 30; fetched again, the cut page would cost a fifth


def test_a_cut_off_last_page_goes_on_after_its_whole_events_to_the_end() -> None:
    items = events(40)
    source = ListSource(items, page_size=30)
    source.cut_off = lambda cursor: 4 if cursor is not None and len(source.cursors) == 2 else None
    pages = walk(source, Partition(1, None, None))
    assert decode_cursor(source.cursors[2]) == (items[33]["timestamp"], items[33]["id"])
    assert stored_ids(pages) == {e["id"] for e in items}
    assert len(source.cursors) == 3 and pages[-1].last


def test_a_page_without_pagination_goes_on_after_its_last_event_with_an_exact_timestamp() -> None:
    """Epoch seconds lose the milliseconds: read low, the event cannot say where the next page starts."""
    items = events(60)
    odd_id = items[29]["id"]  # the page's last event
    source = ListSource(items, page_size=30, render=lambda e: {**e, "timestamp": e["timestamp"] // 1000}
                        if e["id"] == odd_id else dict(e))
    source.lose_pagination = lambda cursor: cursor is None
    pages = walk(source, Partition(1, None, None))
    assert decode_cursor(source.cursors[1]) == (items[28]["timestamp"], items[28]["id"])
    assert stored_ids(pages) == {e["id"] for e in items}


def test_a_page_without_pagination_out_of_the_apis_order_is_fetched_again() -> None:
    items = events(60)
    jumbled = items[10]["id"]
    source = ListSource(items, page_size=30, render=lambda e: {**e, "timestamp": e["timestamp"] + 3_600_000}
                        if e["id"] == jumbled else dict(e))
    source.lose_pagination = lambda cursor: cursor is None and len(source.cursors) == 1
    pages = walk(source, Partition(1, None, None))
    assert source.cursors[:2] == [None, None]  # the damaged page was asked for again
    assert source.cursors[2] in source.issued
    assert stored_ids(pages) == {e["id"] for e in items}


def test_a_chain_waits_for_a_page_as_long_as_the_budgets_full_pages_took_and_longer_after_a_timeout() -> None:
    items = events(190)
    source = ListSource(items, page_size=20)  # 9 full pages and a last one of 10
    ticks = itertools.count(step=2.0)  # every answer takes 2 s: the learned wait is its floor
    held = {"cursor": None}

    def hold_the_sixth_page_once(cursor: str | None) -> bool:
        if len(source.cursors) == 6 and held["cursor"] is None:
            held["cursor"] = cursor
            return True
        return False

    source.hold = hold_the_sixth_page_once
    pages = walk(source, Partition(1, None, None), answers=AnswerTimer(15.0), clock=lambda: next(ticks))
    assert stored_ids(pages) == {e["id"] for e in items}
    assert source.read_timeouts == [15.0] * LEARNED_AFTER + [MIN_WAIT_S] * 3 + [2 * MIN_WAIT_S] + [MIN_WAIT_S] * 4
    assert source.cursors[6] == held["cursor"]  # the held page asked again


def test_a_bound_lowered_while_a_feed_request_is_in_flight_is_walked_before_the_partition_ends() -> None:
    """Defect 1 of issue 19: the API refused a built cursor elsewhere, so the top partition's bound was
    cleared (cover_with_server_cursors) while its request with the old `since` was out. That page ends its
    window (hasMore false), which is no end of the partition now: the range below the old bound is its own."""
    items = events(100)
    source = WindowSource(items, page_size=30)
    old_lo = items[49]["timestamp"]
    top, below = Partition(1, old_lo, None), Partition(2, None, old_lo)
    plan = Plan([top, below], None)

    def refuse_below_while_fetching_page_two(cursor: str | None) -> None:
        if cursor is not None and len(source.cursors) == 2:
            plan.cover_with_server_cursors(2)  # the scheduler folds partition 2 into the top one

    source.during = refuse_below_while_fetching_page_two
    pages = walk(source, top, plan)
    assert stored_ids(pages) == {e["id"] for e in items}
    assert pages[-1].last and plan.partitions[1].done
