"""The scheduler on its own: which budget gets the next chain, what a settled chain leaves, and how it stops.

Budgets are real (throttles, retry loops) on a fake clock; their sources are small fakes, so each test
reads as one scheduling decision. The one test that runs a pass writes to a real PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import psycopg
import pytest

from ingest.api.client import Envelope
from ingest.api.retry_policy import RetryPolicy
from ingest.budgets.budget import FEED, HEADER, QUERY, Budget, QueryPoolProbe
from ingest.budgets.family import Family
from ingest.budgets.limiter import RateLimiter
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import Throttle
from ingest.errors import DatabaseError, HandedBack, RetriesExhausted, RetryableApiError
from ingest.plan.partitions import Partition, Plan
from ingest.plan.scheduler import PassContext, Scheduler
from ingest.signals import StopFlag
from ingest.stats import Stats
from ingest.store import checkpoint
from ingest.store.reconnect import Link, Reconnector
from tests.fix_clock import FakeClock

PAGE_SIZE = 5000
NOWHERE = "postgresql://postgres@127.0.0.1:1/nowhere"  # no server listens: a control link that cannot commit


class WaitingSource:
    """Sends nothing back until the run is stopped, then fails: a chain that holds its partition meanwhile."""

    kind = "documented"
    windowed = False
    page_size = PAGE_SIZE

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.sent = 0
        self.saw_stop = threading.Event()

    def page(self, cursor, lo_ms, hi_ms, limit=None, read_timeout_s=None) -> Envelope:  # noqa: ANN001 - Source protocol
        self.sent += 1
        if self.stop.wait(10.0):
            self.saw_stop.set()
        raise RetryableApiError("no answer")


def budget(kind: str, clock: FakeClock, stop: threading.Event, source: object = None, *, name: str = "",
           family: str = "") -> Budget:
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    throttle = Throttle(name or kind, limiter=limiter, clock=clock, max_chains=8)
    retry = RetryLoop(throttle, RetryPolicy(), Stats(), stop)
    return Budget(name or kind, kind, source=source or WaitingSource(stop), retry=retry,  # type: ignore[arg-type]
                  family=family)


def context(stop: StopFlag, *, database_url: str = NOWHERE, control_url: str = "",
            max_chains: int = 8) -> PassContext:
    class Quiet:
        def maybe_log(self) -> None: ...

        def close(self) -> None: ...

    progress: Callable[[list[Throttle], queue.Queue], Quiet] = lambda throttles, pages: Quiet()  # noqa: E731
    database = Reconnector(database_url, 0, stop=stop)
    control = Link(Reconnector(control_url or database_url, 0, stop=stop), "control")
    return PassContext(database=database, control=control, pass_id=1, stats=Stats(), stop=stop,
                       progress=progress, server_now_ms=lambda: 0, max_chains=max_chains)


def family_of(scheduler: Scheduler, budget: Budget) -> Family:
    return next(f for f in scheduler.families if budget in f.members)


def settle(scheduler: Scheduler, budget: Budget, pid: int, exc: BaseException) -> None:
    """A chain of `budget`'s family on partition `pid` ended with `exc`."""
    future: Future = Future()
    future.set_exception(exc)
    scheduler._running[future] = (pid, family_of(scheduler, budget))
    scheduler._settle(future)


def wide_plan(pages: float) -> Plan:
    """One partition holding about `pages` pages (MIN_SPLIT_PAGES pages every 10,000 ms)."""
    return Plan([Partition(1, 0, int(pages * 5_000))], oldest_ms=0, min_split_ms=10_000)


def test_a_partition_handed_back_goes_first_in_line_and_waits_mid_run_for_its_budget() -> None:
    clock, stop = FakeClock(), StopFlag()
    feed, header = budget(FEED, clock, stop.event), budget(HEADER, clock, stop.event)
    plan = wide_plan(pages=200)
    plan.partitions[2] = Partition(2, None, 0)  # pending behind it
    scheduler = Scheduler(context(stop), plan, [feed, header], clock=clock)
    scheduler._todo.popleft()
    header.throttle.observe(10, 0, 40.0)  # its window is spent: it hands partition 1 back
    settle(scheduler, header, 1, HandedBack("partition 1"))
    part, back_at = scheduler._todo[0]
    assert part.partition_id == 1 and back_at == clock.now + header.send_in_s() > clock.now + 40
    assert not scheduler._orphan_waits_last()  # the feed alone needs 200 page-times: the header is back first
    plan.partitions[1].pos_ms = 5 * 5_000  # five pages left: the feed is done before the header is back
    assert scheduler._orphan_waits_last()


def test_a_partition_left_by_a_retired_budget_waits_for_nobody() -> None:
    """Defect 6 of issue 19: nobody comes back for it, however much is left."""
    clock, stop = FakeClock(), StopFlag()
    feed, header = budget(FEED, clock, stop.event), budget(HEADER, clock, stop.event)
    scheduler = Scheduler(context(stop), wide_plan(pages=10_000), [feed, header], clock=clock)
    scheduler._todo.popleft()
    settle(scheduler, feed, 1, RetriesExhausted("partition 1: gave up after 8 attempts"))
    assert feed.retired is not None and scheduler._todo[0][1] == math.inf
    assert scheduler._orphan_waits_last()


def test_a_budget_failure_with_no_budget_left_fails_the_pass() -> None:
    clock, stop = FakeClock(), StopFlag()
    feed = budget(FEED, clock, stop.event)
    scheduler = Scheduler(context(stop), wide_plan(pages=10), [feed], clock=clock)
    settle(scheduler, feed, 1, RetriesExhausted("partition 1: gave up after 8 attempts"))
    assert feed.retired is None and isinstance(scheduler._error, RetriesExhausted) and stop.event.is_set()


def test_a_thief_takes_the_lower_piece_committed_before_the_owner_sees_it(database_url: str) -> None:
    clock, stop = FakeClock(), StopFlag()
    feed, header = budget(FEED, clock, stop.event), budget(HEADER, clock, stop.event)
    with psycopg.connect(database_url) as conn:
        checkpoint.create_schema(conn)
        pass_id, parts = checkpoint.start_pass(conn, "full", [Partition(1, 0, 10_000_000)], 0, 10_000)
        plan = Plan(parts, oldest_ms=0, min_split_ms=10_000)
        scheduler = Scheduler(dataclasses.replace(context(stop, database_url=database_url), pass_id=pass_id), plan,
                              [feed, header], clock=clock)
        owner = parts[0].partition_id
        scheduler._running[Future()] = (owner, family_of(scheduler, feed))
        new = scheduler._steal(family_of(scheduler, header))
        assert new is not None and (new.lo_ms, new.hi_ms) == (0, 5_000_000)  # equal speeds: half each
        assert plan.lower_bound(owner) == 5_000_000
        rows = conn.execute("SELECT partition_id, lo_ms, hi_ms FROM ingest_partitions ORDER BY partition_id").fetchall()
        assert rows == [(owner, 5_000_000, 10_000_000), (new.partition_id, 0, 5_000_000)]


def test_a_window_that_covers_what_is_left_gets_a_chain_per_page_and_a_stalled_budget_none() -> None:
    clock, stop = FakeClock(), StopFlag()
    feed, header = budget(FEED, clock, stop.event), budget(HEADER, clock, stop.event)
    scheduler = Scheduler(context(stop), wide_plan(pages=3), [feed, header], clock=clock)
    scheduler._running[Future()] = (1, family_of(scheduler, feed))
    header.throttle.observe(10, 6, 50.0)  # six requests left in the window for three pages (and a split's)
    assert scheduler._wanted_chains(family_of(scheduler, header)) == 6
    header.throttle.observe(10, 0, 50.0)  # spent: 50 s to wait while the feed can send
    assert scheduler._wanted_chains(family_of(scheduler, header)) == 0


def test_the_query_pool_on_probation_counts_one_request_of_its_spare_window() -> None:
    """Defect 2 of issue 19: the spare-window rule asked for min(spare, cap) chains on probation too. In the
    family it adds one chain for the query pool's one request, whatever its window holds."""
    clock, stop = FakeClock(), StopFlag()
    header = budget(HEADER, clock, stop.event, name="header", family="events")
    query = budget(QUERY, clock, stop.event, name="query", family="events")
    query.probe = QueryPoolProbe()
    header.throttle.observe(10, 2, 59.0)
    query.throttle.observe(5, 4, 59.0)  # four requests left in its window, one page left to fetch
    plan = Plan([Partition(1, 0, 10_000)], oldest_ms=0, min_split_ms=10_000)
    scheduler = Scheduler(context(stop), plan, [header, query])
    assert [f.name for f in scheduler.families] == ["events"]
    assert scheduler._wanted_chains(scheduler.families[0]) == 3  # two of the header's, one of the query's
    query.probe.verdict = "separate"
    assert scheduler._wanted_chains(scheduler.families[0]) == 6


def test_an_error_in_the_main_loop_stops_every_chain(database_url: str) -> None:
    """Defect 9 of issue 19: a database error while committing a split left stop unset, so the fetchers went
    on sending while the run waited for the writer."""
    with psycopg.connect(database_url) as setup:
        checkpoint.create_schema(setup)
    clock, stop = FakeClock(), StopFlag()
    walking = WaitingSource(stop.event)
    owner = budget(FEED, clock, stop.event, walking)
    thief = budget(HEADER, clock, stop.event, WaitingSource(stop.event))
    plan = Plan([Partition(1, 0, 10_000_000)], oldest_ms=0, min_split_ms=10_000)
    with pytest.raises(DatabaseError):  # the split the thief needs cannot be committed
        Scheduler(context(stop, database_url=database_url, control_url=NOWHERE), plan, [owner, thief]).run()
    assert stop.event.is_set()
    assert walking.saw_stop.wait(5.0) and walking.sent == 1
