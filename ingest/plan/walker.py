"""The chain walker: one partition's cursor chain, page by page through a family's budgets, to the writer."""

from __future__ import annotations

import dataclasses
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from loguru import logger

from ingest.api.client import Envelope
from ingest.api.cursors import ZERO_ID, build_cursor
from ingest.budgets.answer_timeout import AnswerTimer
from ingest.budgets.budget import Budget
from ingest.budgets.family import Family
from ingest.errors import (
    AnswerTimedOut,
    BuiltCursorsRefused,
    CursorExpired,
    CursorRejected,
    FatalApiError,
    RepeatedCursor,
    RetryableApiError,
    Stopped,
)
from ingest.plan.page_position import page_commit, resume_point
from ingest.plan.partitions import Partition, Plan
from ingest.store.page_commit import PageCommit
from ingest.store.rows import parse_timestamps

# A server whose clock runs far ahead calls every cursor we rebuild expired; after this many in a row
# the run stops with a clear error instead of spending budget on a loop.
MAX_REBUILDS_IN_A_ROW = 3
PUT_POLL_S = 0.5  # s; how often a fetcher blocked on a full queue checks that the writer is alive


@dataclass
class ChainWalker:
    """Follows a partition's cursor chain to its lower bound on one family, putting pages on the queue; each
    request goes through the member of the family that can send it soonest."""

    family: Family
    plan: Plan
    pages: queue.Queue
    writer_alive: Callable[[], bool]
    server_now_ms: Callable[[], int] | None = None  # built cursors expire by the server's clock, not ours
    hand_back: Callable[[int], bool] = lambda pid: False  # asked before every request: give the partition back
    clock: Callable[[], float] = time.monotonic

    def run(self, partition: Partition) -> None:
        """Fetch `partition` to its lower bound, placed by the API's own order (a page's next cursor), never by
        a parsed timestamp. The last page's events below the bound are kept too: the upsert absorbs the overlap."""
        pid, hi = partition.partition_id, partition.hi_ms
        until = hi  # the feed's `until`: lowered to continue after a page whose pagination was damaged
        cursor, built = self._start_cursor(partition)
        stored = cursor is not None and not built  # a checkpointed cursor, maybe of another endpoint
        pos: tuple[int, str] | None = None
        if partition.pos_ms is not None and partition.pos_id is not None:
            pos = (partition.pos_ms, partition.pos_id)
        seen: set[str] = set()
        first_page = True
        expired_in_a_row = 0
        while True:
            lo = self.plan.lower_bound(pid)
            if pos is not None and lo is not None and pos[0] < lo and self.plan.claim_done(pid, lo):
                self._put(PageCommit(pid, cursor, pos[0], pos[1], True, ()))  # a split left nothing here
                return
            at_top = cursor is None and pos is None and hi is None
            try:
                # HandedBack before a request: the partition's position is in the plan; the next chain resumes there.
                page = self.family.call(partial(self._fetch, cursor=cursor, lo=lo, until=until), f"partition {pid}",
                                        hand_back=partial(self.hand_back, pid))
            except CursorExpired:
                expired_in_a_row += 1
                if expired_in_a_row > MAX_REBUILDS_IN_A_ROW:
                    raise FatalApiError(
                        f"partition {pid}: the API called {expired_in_a_row} cursors in a row expired, rebuilt"
                        " ones included (is its clock far from ours?); rerun to resume"
                    ) from None
                cursor, built = self._rebuilt(pos, hi), True
                logger.info("partition {}: cursor expired, rebuilt from the last position", pid)
                continue
            except CursorRejected:
                if stored and pos is not None:
                    stored = False  # issued by another endpoint before a restart: start from its position
                    cursor, built = self._built(*pos), True
                    continue
                if not built:
                    raise FatalApiError(f"partition {pid}: the API rejected its own cursor") from None
                if self.family.windowed or hi is None:
                    logger.warning("partition {}: rebuilt cursor refused; restarting from its upper bound", pid)
                    cursor, built, pos, until = None, False, None, hi
                    seen.clear()  # the chain starts over: its cursors may legitimately come again
                    continue
                raise BuiltCursorsRefused(f"partition {pid}: the API refuses built cursors") from None
            expired_in_a_row, stored = 0, False
            if page.next_cursor is not None and page.next_cursor in seen:
                raise RepeatedCursor(f"partition {pid}: the server repeated cursor {page.next_cursor[:24]}…")
            if page.total is not None:
                self.family.stats.total_hint = page.total
            out = page_commit(pid, page, cursor, pos, f"{self.family.kind} partition {pid}", at_top=at_top)
            sent_lo = lo
            while True:
                # Read the bound again: a split while the request was in flight raised it, and a
                # fallback may lower it before the partition is claimed done. The feed's window ended at
                # the bound the request was sent with: below a lowered one its hasMore=false is no end.
                lo = self.plan.lower_bound(pid)
                lowered = self.family.windowed and sent_lo is not None and (lo is None or lo < sent_lo)
                last = (not page.has_more and not lowered) or (
                    lo is not None and out.pos_ms is not None and out.pos_ms < lo)
                if not last or self.plan.claim_done(pid, lo):
                    break
            if first_page:
                self._learn_density(page, at_top=at_top)
                first_page = False
            if out.pos_ms is not None and out.pos_id is not None:
                pos = (out.pos_ms, out.pos_id)
            cursor_lost, cut_off, whole = page.pagination_damaged, page.truncated, len(page.events)
            del page  # the parsed events (~10 MB a page) must not live on while _put waits for the writer
            out = dataclasses.replace(out, last=last)
            self._put(out)
            self.plan.advance(pid, out.next_cursor, out.pos_ms, out.pos_id, self.family.kind)
            if last:
                return
            cursor, built = out.next_cursor, False
            if cursor is not None:
                seen.add(cursor)
            if cursor is None and pos is not None:  # no next cursor: pagination damaged, or a bound lowered
                if cut_off:
                    logger.info("partition {}: a body cut off mid-JSON; its {} whole events are kept and the"
                                " chain goes on after the last of them", pid, whole)
                elif cursor_lost:
                    logger.info("partition {}: a full page came without a well-formed pagination object; its"
                                " events are kept and the chain goes on after the last of them", pid)
                if self.family.windowed:
                    until = pos[0] + 1  # covers the events tied at pos[0] whether `until` is < or <=
                else:
                    cursor, built = self._built(*pos), True

    def _fetch(self, member: Budget, *, cursor: str | None, lo: int | None, until: int | None) -> Envelope:
        """One request through `member`; a full page with damaged pagination counts only if its events can
        place the next one."""
        page = self._timed_fetch(member, cursor, lo, until)
        if page.pagination_damaged and resume_point(page.events, parse_timestamps(page.events)) is None:
            raise RetryableApiError("a page without its next cursor (pagination damaged or body cut off) whose"
                                    " events cannot place the next page: fetched again")
        return page

    def _timed_fetch(self, member: Budget, cursor: str | None, lo: int | None, until: int | None) -> Envelope:
        """A request that waits for its answer as long as the member's page time says; full pages teach it."""
        answers: AnswerTimer = member.throttle.answers
        started = self.clock()
        try:
            page = member.source.page(cursor, lo, until, read_timeout_s=answers.timeout_s())
        except AnswerTimedOut:
            answers.timed_out()
            raise
        if len(page.events) >= member.source.page_size and not page.truncated:
            answers.answered(self.clock() - started)
        return page

    def _learn_density(self, page: Envelope, *, at_top: bool) -> None:
        stamps = [ts for ts in parse_timestamps(page.events) if ts is not None]
        if stamps:
            # The page size asked for, not this page's length: a resumed chain's first page may be its tail.
            self.plan.learn_density(max(stamps), min(stamps), len(stamps), page.total, self.family.page_size,
                                    at_top=at_top)

    def _start_cursor(self, partition: Partition) -> tuple[str | None, bool]:
        if partition.cursor and partition.cursor_kind in (None, self.family.kind):
            return partition.cursor, False
        pos = (partition.pos_ms, partition.pos_id) if partition.pos_ms is not None and partition.pos_id else None
        cursor = self._rebuilt(pos, partition.hi_ms)
        return cursor, cursor is not None

    def _rebuilt(self, pos: tuple[int, str] | None, hi: int | None) -> str | None:
        if pos is not None:
            return self._built(*pos)
        if hi is not None and not self.family.windowed:
            return self._built(hi, ZERO_ID)
        return None

    def _built(self, ts_ms: int, event_id: str) -> str:
        return build_cursor(ts_ms, event_id, now_ms=self.server_now_ms() if self.server_now_ms else None)

    def _put(self, page: PageCommit) -> None:
        while True:
            try:
                self.pages.put(page, timeout=PUT_POLL_S)
                return
            except queue.Full:
                if not self.writer_alive() or self.family.stop.is_set():
                    raise Stopped(0) from None  # on a stop the writer commits what it has; this page is fetched again

