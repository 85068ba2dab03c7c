"""The scheduler on its own: which budget gets the next chain, what a settled chain leaves, and how it stops.

Budgets are real (throttles, retry loops) on a fake clock; their sources are small fakes, so each test
reads as one scheduling decision. The one test that runs a pass writes to a real PostgreSQL.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import psycopg
import pytest

from ingest.api.client import Envelope
from ingest.api.retry_policy import RetryPolicy
from ingest.budgets.budget import FEED, HEADER, QUERY, Budget, QueryPoolProbe
from ingest.budgets.limiter import RateLimiter
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import Throttle
from ingest.errors import RetryableApiError
from ingest.plan.partitions import Partition, Plan
from ingest.plan.scheduler import PassContext, Scheduler
from ingest.signals import StopFlag
from ingest.stats import Stats
from ingest.store import checkpoint

PAGE_SIZE = 5000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


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


def budget(kind: str, clock: Clock, stop: threading.Event, source: object = None, *, name: str = "") -> Budget:
    limiter = RateLimiter(clock=clock, sleep=clock.sleep)
    throttle = Throttle(name or kind, limiter=limiter, clock=clock, max_chains=8)
    retry = RetryLoop(throttle, RetryPolicy(), Stats(), stop)
    return Budget(name or kind, kind, source=source, retry=retry)  # type: ignore[arg-type]


def context(stop: StopFlag, *, database_url: str = "", conn: psycopg.Connection | None = None,
            max_chains: int = 8) -> PassContext:
    class Quiet:
        def maybe_log(self) -> None: ...

        def close(self) -> None: ...

    progress: Callable[[list[Throttle], queue.Queue], Quiet] = lambda throttles, pages: Quiet()  # noqa: E731
    return PassContext(database_url=database_url, conn=conn, pass_id=1, stats=Stats(), stop=stop,  # type: ignore[arg-type]
                       progress=progress, server_now_ms=lambda: 0, max_chains=max_chains)


def test_the_query_pool_on_probation_wants_one_chain_even_with_a_window_to_spare() -> None:
    """Defect 2 of issue 19: the spare-window rule asked for min(spare, cap) chains on probation too."""
    clock, stop = Clock(), StopFlag()
    query = budget(QUERY, clock, stop.event)
    query.probe = QueryPoolProbe()
    query.throttle.observe(5, 4, 59.0)  # four requests left in its window, one page left to fetch
    plan = Plan([Partition(1, 0, 10_000)], oldest_ms=0, min_split_ms=10_000)
    assert Scheduler(context(stop), plan, [query])._wanted_chains(query) == 1


def test_an_error_in_the_main_loop_stops_every_chain(database_url: str) -> None:
    """Defect 9 of issue 19: a database error while committing a split left stop unset, so the fetchers went
    on sending while the run waited for the writer."""
    with psycopg.connect(database_url) as setup:
        checkpoint.create_schema(setup)
    clock, stop = Clock(), StopFlag()
    walking = WaitingSource(stop.event)
    owner = budget(FEED, clock, stop.event, walking)
    thief = budget(HEADER, clock, stop.event, WaitingSource(stop.event))
    plan = Plan([Partition(1, 0, 10_000_000)], oldest_ms=0, min_split_ms=10_000)
    conn = psycopg.connect(database_url)
    conn.close()  # the split the thief needs cannot be committed
    with pytest.raises(psycopg.Error):
        Scheduler(context(stop, database_url=database_url, conn=conn), plan, [owner, thief]).run()
    assert stop.event.is_set()
    assert walking.saw_stop.wait(5.0) and walking.sent == 1
