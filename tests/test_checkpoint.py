"""Pass state in a real PostgreSQL: splits persisted before they act, passes closed, the cover proven."""

from __future__ import annotations

import math

import psycopg
import pytest

from ingest.commands.verify import coverage_gap, first_gap
from ingest.plan.partitions import PAGE_MARGIN, Partition, Plan
from ingest.plan.scheduler import commit_split
from ingest.stats import Stats
from ingest.store import checkpoint
from ingest.store.page_commit import PageCommit
from ingest.store.writer import STAGING_DDL, commit_batch

EVENT_ID = "00000000-0000-0000-0000-00000000000a"


@pytest.fixture
def conn(database_url: str):
    with psycopg.connect(database_url) as c:
        checkpoint.create_schema(c)
        c.execute(STAGING_DDL)
        c.commit()
        yield c


def partitions(database_url: str) -> list[tuple]:
    with psycopg.connect(database_url) as other:
        return other.execute("SELECT partition_id, lo_ms, hi_ms, done FROM ingest_partitions ORDER BY 1").fetchall()


class WatchedPlan(Plan):
    """A plan that records what the database holds at the instant a split is applied in memory."""

    def __init__(self, database_url: str, *args) -> None:
        super().__init__(*args)
        self.database_url = database_url
        self.seen_at_apply: list[tuple] = []

    def apply_split(self, narrowed_id: int, middle_ms: int, new: Partition) -> None:
        self.seen_at_apply = partitions(self.database_url)
        super().apply_split(narrowed_id, middle_ms, new)


def test_a_split_is_in_the_database_before_any_fetcher_sees_the_raised_bound(conn, database_url: str) -> None:
    pass_id, parts = checkpoint.start_pass(conn, checkpoint.FULL, [Partition(1, 0, 1_000_000)], 0, 1_000)
    plan = WatchedPlan(database_url, parts, 0, 1_000)
    new = commit_split(conn, pass_id, plan, plan.propose_split({1}))  # partition 1 is running

    middle = 1_000_000 - int(1_000 * (1 - PAGE_MARGIN) * 500)  # it keeps 1,000 whole pages of 500 ms, less the margin
    assert plan.seen_at_apply == [(1, middle, 1_000_000, False), (2, 0, middle, False)]
    assert (new.partition_id, new.lo_ms, new.hi_ms) == (2, 0, middle)
    # The narrowed fetcher ends at the raised bound and its last page commits; a kill now loses nothing:
    commit_batch(conn, [PageCommit(1, None, middle - 1, "x", True, ())], Stats())
    assert partitions(database_url) == [(1, middle, 1_000_000, True), (2, 0, middle, False)]


def test_closing_a_pass_caps_the_watermark_at_the_clock_and_keeps_the_full_pass_partitions(conn) -> None:
    first, parts = checkpoint.start_pass(conn, checkpoint.FULL, [Partition(1, None, None)], None)
    future = 4_000_000_000_000  # 2096: one future-dated event at the top
    commit_batch(conn, [PageCommit(parts[0].partition_id, None, 1, "x", True, (), newest=(future, EVENT_ID))], Stats())
    now = 1_800_000_000_000
    assert checkpoint.close_pass(conn, first, 100, now) == now

    second, parts = checkpoint.start_pass(conn, checkpoint.INCREMENTAL, [Partition(1, now - 3_600_000, None)], None)
    assert [p.partition_id for p in parts] == [2]
    commit_batch(conn, [PageCommit(2, None, 1, "x", True, (), newest=(now - 5, EVENT_ID))], Stats())
    assert checkpoint.close_pass(conn, second, 100, now) == now - 5
    assert [row[0] for row in conn.execute("SELECT partition_id FROM ingest_partitions ORDER BY 1")] == [1, 2]
    assert coverage_gap(conn) is None


def test_an_open_pass_is_not_a_cover(conn) -> None:
    checkpoint.start_pass(conn, checkpoint.FULL, [Partition(1, 10, None), Partition(2, None, 10)], None)
    conn.commit()
    assert coverage_gap(conn) == "a full pass is unfinished (0 of 2 partitions done): run the ingestion to finish it"


@pytest.mark.parametrize(("ranges", "gap"), [
    ([(None, None)], None),
    ([(10, None), (None, 10)], None),
    ([(10, None), (5, 10), (None, 5)], None),
    ([(None, None), (3, 7)], None),  # a refused partition folded into the top one
    ([(10, None), (None, 9)], (9, 10)),
    ([(10, 20), (None, 10)], (20, math.inf)),
    ([(10, None)], (-math.inf, 10)),
    ([], (-math.inf, math.inf)),
])
def test_first_gap_finds_the_highest_uncovered_range(ranges: list, gap: tuple | None) -> None:
    assert first_gap(ranges) == gap
