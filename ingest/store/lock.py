"""One run at a time: a session-level PostgreSQL advisory lock held for the whole run."""

from __future__ import annotations

import psycopg

from ingest.errors import LockHeld
from ingest.store.database import one

LOCK_KEY = 0x0DA7A5C1  # arbitrary, constant: every datasync-ingest run takes the same lock


def acquire_run_lock(conn: psycopg.Connection) -> None:
    """Take the run lock on an autocommit connection kept open for the run, or raise LockHeld."""
    (got,) = one(conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)))
    if got:
        return
    raise LockHeld(f"another run holds the ingestion lock ({describe_holder(conn) or 'holder unknown'})")


def describe_holder(conn: psycopg.Connection) -> str | None:
    """Who holds the run lock now, or None when nobody does."""
    row = conn.execute(
        "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objid = mod(%s::bigint, 4294967296)"
        " AND l.classid = (%s::bigint >> 32)"
        # advisory locks are per database: another database's ingester on the same server is not ours
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) LIMIT 1",
        (LOCK_KEY, LOCK_KEY),
    ).fetchone()
    if row is None:
        return None
    pid, app, started = row
    return f"{app or 'backend'} (backend pid {pid}, since {started:%Y-%m-%d %H:%M:%S %Z})"
