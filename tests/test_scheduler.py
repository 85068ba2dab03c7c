"""The scheduler on its own: which budget gets the next chain, what a settled chain leaves, and how it stops.

Budgets are real (throttles, retry loops) on a fake clock; their sources are small fakes, so each test
reads as one scheduling decision. The one test that runs a pass writes to a real PostgreSQL.
"""

from __future__ import annotations

import dataclasses
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
from ingest.budgets.pacer import Pacer
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import Throttle
from ingest.errors import DatabaseError, HandedBack, RetriesExhausted, RetryableApiError
from ingest.plan.partitions import PAGE_MARGIN, Partition, Plan
from ingest.plan.scheduler import PassContext, Scheduler, fan_out, next_chain_for
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


def context(stop: StopFlag, *, database_url: str = NOWHERE, control_url: str = "") -> PassContext:
    class Quiet:
        def maybe_log(self) -> None: ...

        def close(self) -> None: ...

    progress: Callable[[list[Throttle], queue.Queue], Quiet] = lambda throttles, pages: Quiet()  # noqa: E731
    database = Reconnector(database_url, 0, stop=stop)
    control = Link(Reconnector(control_url or database_url, 0, stop=stop), "control")
    return PassContext(database=database, control=control, pass_id=1, stats=Stats(), stop=stop,
                       progress=progress, server_now_ms=lambda: 0)


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


def test_a_partition_handed_back_goes_first_in_line_and_waits_for_its_family() -> None:
    clock, stop = FakeClock(), StopFlag()
    feed, header = budget(FEED, clock, stop.event), budget(HEADER, clock, stop.event)
    plan = wide_plan(pages=200)
    plan.partitions[2] = Partition(2, None, 0)  # pending behind it
    scheduler = Scheduler(context(stop), plan, [feed, header])
    scheduler._todo.popleft()
    header.throttle.observe(10, 0, 40.0)  # its window is spent: it hands partition 1 back
    settle(scheduler, header, 1, HandedBack("partition 1"))
    assert scheduler._todo[0] == (plan.partitions[1], False)  # first in line; no family busier than it wants adopts it
    assert scheduler._todo[1][0].partition_id == 2


def test_a_partition_left_by_a_retired_budget_waits_for_nobody() -> None:
    """Defect 6 of issue 19: nobody comes back for it, however much is left."""
    clock, stop = FakeClock(), StopFlag()
    feed, header = budget(FEED, clock, stop.event), budget(HEADER, clock, stop.event)
    scheduler = Scheduler(context(stop), wide_plan(pages=10_000), [feed, header])
    scheduler._todo.popleft()
    settle(scheduler, feed, 1, RetriesExhausted("partition 1: gave up after 8 attempts"))
    assert feed.retired is not None and scheduler._todo[0] == (scheduler.plan.partitions[1], True)
    header_family = family_of(scheduler, header)
    assert next_chain_for([(f, scheduler._busy(f), 0) for f in scheduler.families],
                          orphan_waiting=scheduler._todo[0][1]) is header_family


def test_a_budget_failure_with_no_budget_left_fails_the_pass() -> None:
    clock, stop = FakeClock(), StopFlag()
    feed = budget(FEED, clock, stop.event)
    scheduler = Scheduler(context(stop), wide_plan(pages=10), [feed])
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
                              [feed, header])
        owner = parts[0].partition_id
        scheduler._running[Future()] = (owner, family_of(scheduler, feed))
        new = scheduler._steal(family_of(scheduler, header))
        middle = 10_000_000 - int(1_000 * (1 - PAGE_MARGIN) * 5_000)  # equal speeds: the owner keeps 1,000 pages
        assert new is not None and (new.lo_ms, new.hi_ms) == (0, middle)
        assert plan.lower_bound(owner) == middle
        rows = conn.execute("SELECT partition_id, lo_ms, hi_ms FROM ingest_partitions ORDER BY partition_id").fetchall()
        assert rows == [(owner, middle, 10_000_000), (new.partition_id, 0, middle)]


def test_a_window_that_covers_what_is_left_gets_a_chain_per_piece_and_a_stalled_budget_none() -> None:
    clock, stop = FakeClock(), StopFlag()
    feed, header = budget(FEED, clock, stop.event), budget(HEADER, clock, stop.event)
    scheduler = Scheduler(context(stop), wide_plan(pages=3), [feed, header])
    scheduler._running[Future()] = (1, family_of(scheduler, feed))
    header.throttle.observe(10, 5, 50.0)  # five requests left: four pieces of 0.8 page, and one for a failure
    assert scheduler._wanted_chains(family_of(scheduler, header)) == 4
    header.throttle.observe(10, 4, 50.0)  # one short: fetched one page after another by the chains it keeps
    assert scheduler._wanted_chains(family_of(scheduler, header)) == 1
    header.throttle.observe(10, 0, 50.0)  # spent: 50 s to wait while the feed can send
    assert scheduler._wanted_chains(family_of(scheduler, header)) == 0


def test_the_query_pool_on_probation_counts_one_request_of_its_spare_window() -> None:
    """Defect 2 of issue 19: the spare-window rule counted every request of the query pool's window on
    probation too. It counts one: the query pool sends one request at a time until its verdict."""
    clock, stop = FakeClock(), StopFlag()
    header = budget(HEADER, clock, stop.event, name="header", family="events")
    query = budget(QUERY, clock, stop.event, name="query", family="events")
    query.probe = QueryPoolProbe()
    header.throttle.observe(10, 2, 59.0)
    query.throttle.observe(5, 4, 59.0)  # four requests left in its window, two pages left to fetch
    plan = Plan([Partition(1, 0, 10_000)], oldest_ms=0, min_split_ms=10_000)
    scheduler = Scheduler(context(stop), plan, [header, query])
    assert [f.name for f in scheduler.families] == ["events"]
    assert scheduler._wanted_chains(scheduler.families[0]) == 1  # 2 + 1 requests: three pieces need four
    query.probe.verdict = "separate"
    assert scheduler._wanted_chains(scheduler.families[0]) == 3  # 2 + 4 requests: three pieces and a failure


def pools(clock: FakeClock, stop: threading.Event) -> tuple[Budget, Budget]:
    """A key's two documented pools, the query pool proven separate, both windows announced (10 and 5 per 60 s)."""
    header = budget(HEADER, clock, stop, name="header", family="events")
    query = budget(QUERY, clock, stop, name="query", family="events")
    header.throttle.observe(10, 9, 60.0)
    query.throttle.observe(5, 4, 60.0)
    return header, query


def test_the_two_pools_alone_run_one_chain_when_it_sends_their_windows_in_time() -> None:
    """Issue 19, no feed: each pool rounds its chains up on its own (1 + 1), yet one chain sends their 15
    requests of a window in 15 × 3.5 s < 61 s; a second chain's partition only ends in a partial page, a
    61st request of 60 that opens a fifth window."""
    clock, stop = FakeClock(), StopFlag()
    header, query = pools(clock, stop.event)
    feed = budget(FEED, clock, stop.event)
    scheduler = Scheduler(context(stop), wide_plan(pages=60), [feed, header, query])
    events = family_of(scheduler, header)
    assert events.chains() == 2
    assert scheduler._wanted_chains(events) == 2  # beside the feed: the members' chains, as measured there
    feed.retire("stream-access refused")
    assert scheduler._wanted_chains(events) == 1


def test_a_family_alone_whose_rate_keeps_two_chains_busy_runs_two() -> None:
    clock, stop = FakeClock(), StopFlag()
    header, query = pools(clock, stop.event)
    for _ in range(5):
        header.throttle.answers.answered(5.0)  # pages of ~4.7 s: 15 requests take 70 s of a 61 s window
    scheduler = Scheduler(context(stop), wide_plan(pages=60), [header, query])
    assert scheduler._wanted_chains(scheduler.families[0]) == 2


@pytest.mark.parametrize(("pages", "spare", "planned"), [
    (3.0, 9, (4, 1)),  # four pieces of 0.8 page, a request each
    (3.0, 5, (4, 1)),  # and one request kept for a failure
    (3.0, 4, None),  # two pieces of 1.6 pages would cost 2 × 2 requests and that one
    (10.0, 16, (7, 2)),  # too many chains for one round (13 > 8): two requests each
    (15.0, 15, None),  # the last of four windows without chaos: one chain, no partial page
    (1.0, 15, None),  # one request fetches it
    (None, 15, None),  # density unknown
])
def test_the_fan_out_takes_the_fewest_rounds_the_spare_requests_pay_for(
        pages: float | None, spare: int, planned: tuple[int, int] | None) -> None:
    assert fan_out(pages, spare, max_chains=8) == planned


def test_a_fan_out_thief_leaves_the_owner_a_piece_committed_before_the_owner_sees_it(database_url: str) -> None:
    clock, stop = FakeClock(), StopFlag()
    header, query = pools(clock, stop.event)
    with psycopg.connect(database_url) as conn:
        checkpoint.create_schema(conn)
        pass_id, parts = checkpoint.start_pass(conn, "full", [Partition(1, 0, 15_000)], 0, 10_000)
        plan = Plan(parts, oldest_ms=0, min_split_ms=10_000)  # three pages, 5,000 ms each
        scheduler = Scheduler(dataclasses.replace(context(stop, database_url=database_url), pass_id=pass_id), plan,
                              [header, query])
        events = scheduler.families[0]
        owner = parts[0].partition_id
        scheduler._running[Future()] = (owner, events)
        assert scheduler._wanted_chains(events) == 4  # 9 + 4 requests left for four pieces
        new = scheduler._steal(events)
        assert new is not None and (new.lo_ms, new.hi_ms) == (0, 11_000)  # the owner keeps 0.8 page
        assert plan.lower_bound(owner) == 11_000
        rows = conn.execute("SELECT partition_id, lo_ms, hi_ms FROM ingest_partitions ORDER BY partition_id").fetchall()
        assert rows == [(owner, 11_000, 15_000), (new.partition_id, 0, 11_000)]


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


def test_a_family_running_more_chains_than_it_wants_hands_as_many_back_as_the_others_lack() -> None:
    """The feed started eight partitions before its first 429 showed that three chains keep it busy; the
    pools' 20 s windows keep three busy and run one. Two feed chains give their partitions back (whole, from
    their positions), not five: nobody lacks more. Seen at 300k with 20 s windows: the pools sent nothing in
    the last 20 s while eight feed chains crawled at an eighth of the feed's rate each (ratio 1.96 -> 1.55)."""
    clock, stop = FakeClock(), StopFlag()
    feed = budget(FEED, clock, stop.event)
    header = budget(HEADER, clock, stop.event, name="header", family="events")
    query = budget(QUERY, clock, stop.event, name="query", family="events")
    query.probe = QueryPoolProbe()  # on probation: one chain
    feed.throttle.pacer = Pacer(clock=clock, sleep=clock.sleep)
    feed.throttle.restore(0.667, None)  # x 3.5 s a page: three chains
    header.throttle.observe(10, 10, 20.0)  # 10 per 21 s x 3.5 s: two chains
    plan = Plan([Partition(pid, pid * 100_000, (pid + 1) * 100_000) for pid in range(1, 10)], oldest_ms=0,
                min_split_ms=10_000)
    scheduler = Scheduler(context(stop), plan, [feed, header, query])
    feed_family, events = family_of(scheduler, feed), family_of(scheduler, header)
    assert (scheduler._wanted_chains(feed_family), scheduler._wanted_chains(events)) == (3, 3)
    for pid in range(1, 9):
        scheduler._running[Future()] = (pid, feed_family)
    scheduler._running[Future()] = (9, events)
    scheduler._todo.clear()  # every partition is running
    scheduler._count_surplus()
    assert [scheduler._hand_back(feed_family, pid) for pid in (1, 1, 2, 3, 4)] == [True, True, True, False, False]
    assert not scheduler._hand_back(events, 9)
    settle(scheduler, feed, 1, HandedBack("partition 1"))
    assert scheduler._todo[0] == (plan.partitions[1], False) and 1 not in scheduler._leaving
    scheduler._count_surplus()  # partition 2's chain is still leaving; partition 1 waits in line for a chain
    assert not scheduler._hand_back(feed_family, 3)


def test_beside_the_feed_a_short_pass_gets_the_chains_that_spend_the_pools_windows_before_it_ends() -> None:
    """At 200,000 events the pass ends ~20 s in: two chains sent 9 of the pools' 15 requests by then, and the
    feed fetched the rest at its paced rate (1.6 x the minimum, against 1.3 with this rule)."""
    clock, stop = FakeClock(), StopFlag()
    header, query = pools(clock, stop.event)
    feed = budget(FEED, clock, stop.event)
    feed.throttle.answered = 1  # its rate unknown yet: eight chains, a page each per 3.5 s
    scheduler = Scheduler(context(stop), wide_plan(pages=20), [feed, header, query])
    events = family_of(scheduler, header)
    assert scheduler._wanted_chains(events) == 4 + 2  # the pass ends in ~8 s: 9 and 4 requests of 3.5 s
    scheduler.plan = wide_plan(pages=200)
    assert scheduler._wanted_chains(events) == 2  # it outlasts the windows: a chain each sends them in time
    scheduler.plan = wide_plan(pages=20)
    feed.retire("stream-access refused")
    assert scheduler._wanted_chains(events) == 1  # alone, every request is the pass's: one chain, no partial page
