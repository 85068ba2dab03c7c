"""Pass state in PostgreSQL: passes, their partitions and positions, the watermark, the run log."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg.types.json import Jsonb

from ingest.store.database import one
from ingest.store.partition_row import Partition

FULL = "full"
INCREMENTAL = "incremental"


@dataclass(frozen=True)
class PassState:
    """What the database says about ingestion so far."""

    pass_id: int | None  # the open pass, None when no pass is under way
    kind: str | None  # FULL or INCREMENTAL (the open pass)
    partitions: list[Partition]  # the open pass's partitions
    watermark_ms: int | None  # the API's newest event when the last complete pass began
    oldest_ms: int | None  # oldest timestamp estimated when the open pass was planned
    min_split_ms: int  # narrowest range worth splitting (see partitions.min_split_ms)


def create_schema(conn: psycopg.Connection) -> None:
    """Create every table if missing, bring older stores up to date (idempotent); commits."""
    sql = resources.files("ingest.store").joinpath("schema.sql").read_text()
    with conn.transaction():
        # Two first runs at once must not both try to create the tables.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('datasync-ingest schema'))")
        conn.execute(sql)
        conn.execute("INSERT INTO ingest_state DEFAULT VALUES ON CONFLICT DO NOTHING")
        _adopt_partitions_without_pass(conn)


def _adopt_partitions_without_pass(conn: psycopg.Connection) -> None:
    """A store written before passes were recorded: its partitions become one open full pass."""
    (orphans,) = one(conn.execute("SELECT count(*) FROM ingest_partitions WHERE pass_id IS NULL"))
    if orphans:
        (pass_id,) = one(conn.execute(f"INSERT INTO ingest_passes (kind) VALUES ('{FULL}') RETURNING pass_id"))
        conn.execute("UPDATE ingest_partitions SET pass_id = %s WHERE pass_id IS NULL", (pass_id,))


def load_state(conn: psycopg.Connection) -> PassState:
    open_pass = conn.execute(
        "SELECT pass_id, kind FROM ingest_passes WHERE completed_at IS NULL ORDER BY pass_id DESC LIMIT 1"
    ).fetchone()
    pass_id, kind = open_pass if open_pass else (None, None)
    rows = conn.execute(
        "SELECT partition_id, lo_ms, hi_ms, cursor, pos_ms, pos_id, done, events"
        " FROM ingest_partitions WHERE pass_id = %s ORDER BY partition_id", (pass_id,)
    ).fetchall()
    watermark, oldest, min_split = one(conn.execute(
        "SELECT watermark_ms, oldest_ms, min_split_ms FROM ingest_state"
    ))
    conn.commit()
    return PassState(pass_id, kind, [Partition(*row) for row in rows], watermark, oldest, min_split)


def start_pass(
    conn: psycopg.Connection, kind: str, partitions: list[Partition], oldest_ms: int | None,
    min_split_ms: int = 0,
) -> tuple[int, list[Partition]]:
    """Persist a newly planned pass; its id and its partitions, numbered after every earlier one."""
    floor = None if kind == FULL else min((p.lo_ms for p in partitions if p.lo_ms is not None), default=None)
    with conn.transaction():
        (pass_id,) = one(conn.execute(
            "INSERT INTO ingest_passes (kind, floor_ms) VALUES (%s, %s) RETURNING pass_id", (kind, floor)
        ))
        (base,) = one(conn.execute("SELECT coalesce(max(partition_id), 0) FROM ingest_partitions"))
        numbered = [dataclasses.replace(p, partition_id=base + i + 1) for i, p in enumerate(partitions)]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ingest_partitions (partition_id, lo_ms, hi_ms, pass_id) VALUES (%s, %s, %s, %s)",
                [(p.partition_id, p.lo_ms, p.hi_ms, pass_id) for p in numbered],
            )
        conn.execute("UPDATE ingest_state SET oldest_ms = %s, min_split_ms = %s", (oldest_ms, min_split_ms))
    return pass_id, numbered


def persist_split(conn: psycopg.Connection, pass_id: int, narrowed: int, middle_ms: int, new: Partition) -> None:
    """Commit a split before anyone acts on it: the narrowed partition's new lower bound and the new one.

    Until this commits, the fetcher of `narrowed` still works to the old bound, so a crash at any
    instant leaves the whole range covered by someone.
    """
    with conn.transaction():
        conn.execute("UPDATE ingest_partitions SET lo_ms = %s WHERE partition_id = %s", (middle_ms, narrowed))
        conn.execute(
            "INSERT INTO ingest_partitions (partition_id, lo_ms, hi_ms, pass_id) VALUES (%s, %s, %s, %s)",
            (new.partition_id, new.lo_ms, new.hi_ms, pass_id),
        )


def close_pass(conn: psycopg.Connection, pass_id: int, api_total: int | None, server_now_ms: int) -> int | None:
    """Mark a pass whose partitions are all done complete; move the watermark; drop partitions no longer needed.

    The watermark becomes the API's newest event as seen when the pass walked the top (never a stored
    timestamp from the future: capped at the server's clock). The partitions of the last complete full
    pass are kept for `verify`. Returns the watermark.
    """
    with conn.transaction():
        (pending,) = one(conn.execute(
            "SELECT count(*) FROM ingest_partitions WHERE pass_id = %s AND NOT done", (pass_id,)
        ))
        if pending:
            raise RuntimeError(f"close_pass with {pending} partitions not done")
        (kind, newest) = one(conn.execute(
            "UPDATE ingest_passes SET completed_at = now(), api_total = %s WHERE pass_id = %s"
            " RETURNING kind, newest_ms", (api_total, pass_id),
        ))
        if newest is None:  # no page came from the top (e.g. an empty API): what is stored, up to now
            (newest,) = one(conn.execute(
                "SELECT (extract(epoch FROM max(\"timestamp\")) * 1000)::bigint FROM ingested_events"
                " WHERE \"timestamp\" <= timestamptz 'epoch' + %s * interval '1 millisecond'", (server_now_ms,)
            ))
        watermark = min(newest, server_now_ms) if newest is not None else None
        conn.execute(
            "UPDATE ingest_state SET completed_at = now(), watermark_ms = coalesce(%s, watermark_ms)", (watermark,)
        )
        if kind == FULL:
            conn.execute("DELETE FROM ingest_partitions WHERE pass_id <> %s", (pass_id,))
        else:
            conn.execute(
                "DELETE FROM ingest_partitions WHERE pass_id <> %s AND pass_id <>"
                " (SELECT max(pass_id) FROM ingest_passes WHERE kind = %s AND completed_at IS NOT NULL)",
                (pass_id, FULL),
            )
    return watermark


def stored_events(conn: psycopg.Connection) -> int:
    """Events in the store now."""
    (stored,) = one(conn.execute("SELECT count(*) FROM ingested_events"))
    conn.commit()
    return stored


def start_run(conn: psycopg.Connection, strategy: str) -> int:
    with conn.transaction():
        (run_id,) = one(conn.execute(
            "INSERT INTO ingest_runs (strategy) VALUES (%s) RETURNING run_id", (strategy,)
        ))
    return run_id


def record_progress(conn: psycopg.Connection, run_id: int, *, in_table: int, api_total: int | None, rate: float,
                    eta_s: float | None, throttled: list[tuple[str, int]]) -> None:
    """Persist how far the run is (what its live bar shows), for `status` in another process; commits."""
    with conn.transaction():
        conn.execute(
            "UPDATE ingest_runs SET progress_at = now(), in_table = %s, api_total = %s, rate = %s, eta_s = %s,"
            " throttled = %s WHERE run_id = %s",
            (in_table, api_total, rate, eta_s, Jsonb(throttled), run_id),
        )


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


def persist_cover(conn: psycopg.Connection, pass_id: int, refused_id: int, extended: Partition | None,
                  created: Partition | None) -> None:
    """Commit the fold of a refused partition into a chain of server cursors (see Plan.cover_with_server_cursors)."""
    with conn.transaction():
        if extended is not None:
            conn.execute("UPDATE ingest_partitions SET lo_ms = NULL WHERE partition_id = %s", (extended.partition_id,))
        if created is not None:
            conn.execute(
                "INSERT INTO ingest_partitions (partition_id, lo_ms, hi_ms, pass_id) VALUES (%s, NULL, NULL, %s)",
                (created.partition_id, pass_id),
            )
        conn.execute("UPDATE ingest_partitions SET done = true WHERE partition_id = %s", (refused_id,))


def save_budget_states(conn: psycopg.Connection, states: dict[str, tuple[float | None, float | None]]) -> None:
    """Persist each budget's learned rate (req/s) and its not-before deadline (epoch s); commits."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ingest_budgets (name, rate_per_s, not_before) VALUES (%s, %s, to_timestamp(%s))"
            " ON CONFLICT (name) DO UPDATE SET rate_per_s = excluded.rate_per_s, not_before = excluded.not_before,"
            " updated_at = now()",
            [(name, rate, not_before) for name, (rate, not_before) in states.items()],
        )


def budgets_used_within(conn: psycopg.Connection, seconds: float) -> frozenset[str]:
    """Names of the budgets whose state an earlier run saved less than `seconds` ago."""
    rows = conn.execute("SELECT name FROM ingest_budgets WHERE updated_at > now() - make_interval(secs => %s)",
                        (seconds,)).fetchall()
    conn.commit()
    return frozenset(name for (name,) in rows)


def load_budget_states(conn: psycopg.Connection) -> dict[str, tuple[float | None, float | None]]:
    """{budget name: (rate per s, not-before as epoch s)} as the last run left them."""
    rows = conn.execute(
        "SELECT name, rate_per_s, extract(epoch FROM not_before)::float8 FROM ingest_budgets").fetchall()
    conn.commit()
    return {name: (rate, not_before) for name, rate, not_before in rows}
