"""`status` and `verify`: what the database holds, and whether it holds everything the API has."""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg

from ingest.commands.api_probe import anchor_served, api_requests, api_total_via
from ingest.config import Settings
from ingest.store.database import one
from ingest.store.origin import check_origin, origin_for


@dataclass(frozen=True)
class Verification:
    """What `verify` proves: the time range covered without a gap, and every event the API counts here."""

    api_total: int | None
    stored: int
    quarantined: int  # distinct quarantined events whose id is not stored (a damaged copy is not a loss)
    coverage_gap: str | None  # why the partitions do not prove a gap-free cover; None when they do
    per_day: list[tuple[str, int]]

    @property
    def accounted(self) -> int:
        return self.stored + self.quarantined

    @property
    def surplus(self) -> int:
        """Events beyond meta.total (one public run saw 3,000,003 distinct ids): a warning, not a failure."""
        return max(0, self.accounted - self.api_total) if self.api_total is not None else 0

    @property
    def problem(self) -> str | None:
        """Why the store is not complete, or None when it is."""
        if self.coverage_gap is not None:
            return self.coverage_gap
        if self.api_total is None:
            return "the API did not report meta.total, so completeness cannot be proven"
        if self.accounted < self.api_total:
            return (f"{self.api_total - self.accounted:,} events missing: {self.accounted:,} accounted for"
                    f" ({self.stored:,} stored + {self.quarantined:,} quarantined) of {self.api_total:,}")
        return None

    @property
    def complete(self) -> bool:
        return self.problem is None


def verify(conn: psycopg.Connection, api_total: int | None, *, per_day: bool = True,
           stored: int | None = None) -> Verification:
    """Account for the API's meta.total in the store, and prove the cover from the partition table. `stored`:
    the rows a run knows the table holds, taken instead of counting them."""
    if stored is None:
        (stored,) = one(conn.execute("SELECT count(*) FROM ingested_events"))
    (quarantined,) = one(conn.execute(
        "SELECT count(DISTINCT q.event_id) + count(*) FILTER (WHERE q.event_id IS NULL)"
        " FROM ingest_quarantine q"
        " WHERE q.event_id IS NULL OR NOT EXISTS (SELECT 1 FROM ingested_events e WHERE e.id = q.event_id)"
    ))
    days = conn.execute(
        "SELECT coalesce(to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 'no timestamp'), count(*)"
        " FROM ingested_events GROUP BY 1 ORDER BY 1"
    ).fetchall() if per_day else []
    return Verification(api_total, stored, quarantined, coverage_gap(conn), days)


def verify_tally(conn: psycopg.Connection, api_total: int | None, stored: int) -> Verification:
    """`verify` at the end of a pass, from its tally of the rows stored (counted before it, plus what its
    commits inserted): a table of millions is counted (0.8-3.8 s at 3M) only when the tally falls short.
    Inserts are counted in the transactions that made them, so the tally holds no row that is not there."""
    result = verify(conn, api_total, per_day=False, stored=stored)
    short = result.api_total is not None and result.accounted < result.api_total
    return verify(conn, api_total, per_day=False) if short else result  # a gap is not the count's to mend


def coverage_gap(conn: psycopg.Connection) -> str | None:
    """Why the recorded passes do not cover the whole time range, or None when they do.

    Proven from the partition table: no pass is open, and the done partitions of the last complete full
    pass tile (-inf, +inf) without a gap (later incremental passes only re-read the top).
    """
    open_pass = conn.execute(
        "SELECT p.kind, count(*) FILTER (WHERE t.done), count(t.*) FROM ingest_passes p"
        " LEFT JOIN ingest_partitions t USING (pass_id) WHERE p.completed_at IS NULL GROUP BY p.pass_id, p.kind"
    ).fetchone()
    if open_pass:
        kind, done, count = open_pass
        return f"a {kind} pass is unfinished ({done} of {count} partitions done): run the ingestion to finish it"
    full = one(conn.execute(
        "SELECT max(pass_id) FROM ingest_passes WHERE kind = 'full' AND completed_at IS NOT NULL"
    ))[0]
    if full is None:
        return "no complete full pass is recorded: run the ingestion"
    ranges = conn.execute(
        "SELECT lo_ms, hi_ms FROM ingest_partitions WHERE pass_id = %s AND done", (full,)
    ).fetchall()
    gap = first_gap(ranges)
    if gap is not None:
        return f"the last full pass left [{gap[0]}, {gap[1]}) ms uncovered: run the ingestion"
    return None


def first_gap(ranges: list[tuple[int | None, int | None]]) -> tuple[float, float] | None:
    """The highest range of timestamps no [lo, hi) covers (None bounds are infinite), or None."""
    reach = math.inf  # everything at or above reach is covered
    for lo, hi in sorted(ranges, key=lambda r: math.inf if r[1] is None else r[1], reverse=True):
        top = math.inf if hi is None else hi
        if top < reach:
            return top, reach
        reach = min(reach, -math.inf if lo is None else lo)
        if reach == -math.inf:
            return None
    return -math.inf, reach


def verify_against_api(conn: psycopg.Connection, settings: Settings, *, per_day: bool = True) -> Verification:
    """`verify` for a store: refused (OriginMismatch) when it holds another API's events; creates no rows."""
    with api_requests(settings) as (client, requester):
        ours = origin_for(settings.base_url, settings.api_keys[0], settings.demo_label)
        check_origin(conn, ours, lambda anchor: anchor_served(client, requester, anchor), record=False)
        return verify(conn, api_total_via(client, requester), per_day=per_day)
