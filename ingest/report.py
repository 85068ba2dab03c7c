"""`status` and `verify`: what the database holds, and whether it holds everything the API has."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ingest.lock import describe_holder


@dataclass(frozen=True)
class Verification:
    api_total: int | None
    stored: int
    duplicate_ids: int
    quarantined: int
    per_day: list[tuple[str, int]]

    @property
    def complete(self) -> bool:
        """Everything the API reports is stored, or accounted for in quarantine (damaged ids)."""
        if self.api_total is None or self.duplicate_ids:
            return False
        return self.stored >= self.api_total or self.stored + self.quarantined >= self.api_total


def status_lines(conn: psycopg.Connection) -> list[str]:
    """Human-readable status: partitions, totals, last run, lock holder."""
    (stored,) = conn.execute("SELECT count(*) FROM ingested_events").fetchone()
    (quarantined,) = conn.execute("SELECT count(*) FROM ingest_quarantine").fetchone()
    watermark, completed = conn.execute("SELECT watermark_ms, completed_at FROM ingest_state").fetchone()
    lines = [f"events stored: {stored:,}", f"quarantined: {quarantined:,}"]
    lines.append(
        f"last complete pass: {completed:%Y-%m-%d %H:%M:%S %Z} (newest event {watermark} ms)"
        if completed else "last complete pass: none yet"
    )
    parts = conn.execute(
        "SELECT partition_id, lo_ms, hi_ms, pos_ms, done, events FROM ingest_partitions ORDER BY partition_id"
    ).fetchall()
    if parts:
        done = sum(1 for p in parts if p[4])
        lines.append(f"current pass: {done} of {len(parts)} partitions done")
        for pid, lo, hi, pos, is_done, events in parts:
            state = "done" if is_done else (f"at {pos} ms" if pos is not None else "not started")
            lines.append(f"  partition {pid}: [{lo if lo is not None else '-inf'}, {hi if hi is not None else '+inf'})"
                         f" {state}, {events:,} events")
    else:
        lines.append("current pass: none in progress")
    run = conn.execute(
        "SELECT run_id, started_at, ended_at, outcome, strategy, events_stored FROM ingest_runs"
        " ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if run:
        run_id, started, ended, outcome, strategy, run_stored = run
        end = f"{ended:%Y-%m-%d %H:%M:%S %Z}" if ended else "-"
        lines.append(f"last run: #{run_id} {outcome} ({strategy}), started {started:%Y-%m-%d %H:%M:%S %Z},"
                     f" ended {end}, {run_stored:,} events stored")
    holder = describe_holder(conn)
    lines.append(f"lock: held by {holder}" if holder else "lock: free (no run in progress)")
    return lines


def verify(conn: psycopg.Connection, api_total: int | None) -> Verification:
    (stored, distinct) = conn.execute("SELECT count(*), count(DISTINCT id) FROM ingested_events").fetchone()
    (quarantined,) = conn.execute("SELECT count(DISTINCT payload) FROM ingest_quarantine").fetchone()
    per_day = conn.execute(
        "SELECT coalesce(to_char(\"timestamp\" AT TIME ZONE 'UTC', 'YYYY-MM-DD'), 'no timestamp'), count(*)"
        " FROM ingested_events GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return Verification(api_total, stored, stored - distinct, quarantined, per_day)
