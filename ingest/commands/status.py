"""`status`: what the store holds, the last run, the lock, and the progress of a run going on in another process.

A run in progress is read from the database: its row in ingest_runs, where it records every
PROGRESS_INTERVAL what its live bar shows (events of meta.total, rate, ETA, 429s per budget), and the
ingested_at of every row its writer committed (events stored by it so far).
"""

from __future__ import annotations

import psycopg

from ingest.commands.progress import throttled_text
from ingest.store.database import one
from ingest.store.lock import describe_holder


def running_lines(conn: psycopg.Connection) -> list[str]:
    """Lines on the run holding the lock now ("run in progress: ...", then its live figures once it has
    recorded them), or none when no run is."""
    if describe_holder(conn) is None:
        return []  # a row still 'running' without the lock is a run that was killed, not one in progress
    row = conn.execute(
        "SELECT run_id, strategy, started_at, extract(epoch FROM clock_timestamp() - started_at),"
        " extract(epoch FROM clock_timestamp() - progress_at), in_table, api_total, rate, eta_s, throttled"
        " FROM ingest_runs WHERE outcome = 'running' ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return []
    run_id, strategy, started_at, elapsed_s, age_s, in_table, total, rate, eta_s, throttled = row
    (by_run,) = one(conn.execute("SELECT count(*) FROM ingested_events WHERE ingested_at >= %s", (started_at,)))
    lines = [f"run in progress: #{run_id} ({strategy}), {float(elapsed_s):,.0f} s so far:"
             f" {by_run:,} events stored by it, {by_run / max(float(elapsed_s), 1e-9):,.0f} events/s"]
    if age_s is not None:  # what its live bar showed at its last progress interval
        share = f"{in_table:,} of {total:,} events ({100 * in_table / total:.1f}%)" if total else (
            f"{in_table:,} events (meta.total not known yet)")
        eta = f"{eta_s:,.0f} s" if eta_s is not None else "?"
        lines.append(f"  as the run saw it {float(age_s):.1f} s ago: {share}, {rate:,.0f} events/s, ETA {eta},"
                     f" {throttled_text(sum(n for _, n in throttled), [(name, n) for name, n in throttled])}")
    return lines


def status_lines(conn: psycopg.Connection) -> list[str]:
    """Human-readable status: partitions, totals, last run, lock holder."""
    (stored,) = one(conn.execute("SELECT count(*) FROM ingested_events"))
    (quarantined,) = one(conn.execute("SELECT count(*) FROM ingest_quarantine"))
    watermark, completed = one(conn.execute("SELECT watermark_ms, completed_at FROM ingest_state"))
    lines = [f"events stored: {stored:,}", f"quarantined: {quarantined:,}"]
    lines.append(
        f"last complete pass: {completed:%Y-%m-%d %H:%M:%S %Z} (newest event {watermark} ms)"
        if completed else "last complete pass: none yet"
    )
    parts = conn.execute(
        "SELECT partition_id, lo_ms, hi_ms, pos_ms, done, events FROM ingest_partitions"
        " WHERE pass_id IN (SELECT pass_id FROM ingest_passes WHERE completed_at IS NULL) ORDER BY partition_id"
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
