"""Pass state in PostgreSQL: partitions and their positions, the watermark, the run log."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import psycopg

from ingest.partitions import Partition


@dataclass(frozen=True)
class PassState:
    """What the database says about ingestion so far."""

    partitions: list[Partition]  # the current pass; empty when no pass is under way
    watermark_ms: int | None  # newest timestamp stored when the last pass completed
    oldest_ms: int | None  # oldest timestamp estimated when the current pass was planned
    min_split_ms: int  # narrowest range worth splitting (see partitions.min_split_ms)


def create_schema(conn: psycopg.Connection) -> None:
    """Create every table if missing (idempotent); commits."""
    sql = resources.files("ingest").joinpath("schema.sql").read_text()
    with conn.transaction():
        # Two first runs at once must not both try to create the tables.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('datasync-ingest schema'))")
        conn.execute(sql)
        conn.execute("INSERT INTO ingest_state DEFAULT VALUES ON CONFLICT DO NOTHING")


def load_state(conn: psycopg.Connection) -> PassState:
    rows = conn.execute(
        "SELECT partition_id, lo_ms, hi_ms, cursor, pos_ms, pos_id, done, events"
        " FROM ingest_partitions ORDER BY partition_id"
    ).fetchall()
    watermark, oldest, min_split = conn.execute(
        "SELECT watermark_ms, oldest_ms, min_split_ms FROM ingest_state"
    ).fetchone()
    conn.commit()
    return PassState([Partition(*row) for row in rows], watermark, oldest, min_split)


def start_pass(
    conn: psycopg.Connection, partitions: list[Partition], oldest_ms: int | None, min_split_ms: int = 0
) -> None:
    """Persist a newly planned pass."""
    with conn.transaction():
        conn.execute("DELETE FROM ingest_partitions")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ingest_partitions (partition_id, lo_ms, hi_ms) VALUES (%s, %s, %s)",
                [(p.partition_id, p.lo_ms, p.hi_ms) for p in partitions],
            )
        conn.execute("UPDATE ingest_state SET oldest_ms = %s, min_split_ms = %s", (oldest_ms, min_split_ms))


def finish_pass(conn: psycopg.Connection) -> int | None:
    """Close a pass whose partitions are all done: move the watermark up, drop the partitions."""
    with conn.transaction():
        (pending,) = conn.execute("SELECT count(*) FROM ingest_partitions WHERE NOT done").fetchone()
        if pending:
            raise RuntimeError(f"finish_pass with {pending} partitions not done")
        (watermark,) = conn.execute(
            "UPDATE ingest_state SET completed_at = now(), watermark_ms = GREATEST(watermark_ms,"
            " (SELECT (extract(epoch FROM max(\"timestamp\")) * 1000)::bigint FROM ingested_events))"
            " RETURNING watermark_ms"
        ).fetchone()
        conn.execute("DELETE FROM ingest_partitions")
    return watermark


def start_run(conn: psycopg.Connection, strategy: str) -> int:
    with conn.transaction():
        (run_id,) = conn.execute(
            "INSERT INTO ingest_runs (strategy) VALUES (%s) RETURNING run_id", (strategy,)
        ).fetchone()
    return run_id


def end_run(
    conn: psycopg.Connection, run_id: int, outcome: str, strategy: str, stored: int, duplicates: int,
    quarantined: int,
) -> None:
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.rollback()  # a failed statement of this run must not swallow its record
    with conn.transaction():
        conn.execute(
            "UPDATE ingest_runs SET ended_at = now(), outcome = %s, strategy = %s, events_stored = %s,"
            " duplicates = %s, quarantined = %s WHERE run_id = %s",
            (outcome, strategy, stored, duplicates, quarantined, run_id),
        )
