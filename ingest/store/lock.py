"""One run at a time: a session-level PostgreSQL advisory lock held for the whole run."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from loguru import logger

from ingest.errors import LockHeld
from ingest.store.database import one, one_line
from ingest.store.reconnect import Reconnector

LOCK_KEY = 0x0DA7A5C1  # arbitrary, constant: every datasync-ingest run takes the same lock
LOCK_CHECK_S = 1.0  # s; how soon a lock lost with its connection is noticed and taken again
LOCK_CLOSE_JOIN_S = 5.0  # s; the keeper releases the lock at once when asked; this bounds a stuck one


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


class RunLock(threading.Thread):
    """The run lock on a connection of its own, taken again when a blip takes it away.

    An advisory lock lives as long as its session: when the database drops the connection (a restart,
    a failover, a proxy's idle cut) the lock is gone and another run could take it. This thread looks
    every LOCK_CHECK_S; after a loss it reconnects (within DB_RECONNECT_TIMEOUT) and takes the lock
    again. When it cannot (another run holds it by then: LockHeld, exit 3; the database stayed away),
    `error` says why and `on_failure` is called to stop the run. Construction takes the lock or raises.
    """

    def __init__(self, database: Reconnector, on_failure: Callable[[], None]) -> None:
        super().__init__(name="run-lock", daemon=True)
        self._database = database
        self._on_failure = on_failure
        self._closing = threading.Event()
        self.error: BaseException | None = None
        self._conn = database.connect("lock", autocommit=True)
        try:
            acquire_run_lock(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def run(self) -> None:
        try:
            while not self._closing.wait(LOCK_CHECK_S):
                try:
                    self._conn.execute("SELECT 1")
                except psycopg.Error as exc:
                    if not self._conn.broken:
                        raise
                    self._retake(exc)
        except BaseException as exc:  # crosses to the main thread, never dies silently
            self.error = exc
            self._on_failure()
        finally:
            self._release()

    def _retake(self, lost: psycopg.Error) -> None:
        logger.warning("the run lock was lost with its connection ({}): taking it again", one_line(lost))
        self._conn.close()
        while True:  # until the lock is ours again, another run's, or the database stayed away too long
            self._conn = self._database.connect("lock", autocommit=True)
            try:
                (got,) = one(self._conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)))
                holder = None if got else describe_holder(self._conn) or "holder unknown"
            except psycopg.Error:
                if not self._conn.broken:
                    raise
                continue  # lost again at once: the blip is not over
            if holder is not None:
                raise LockHeld(f"the run lock was lost with its connection and another run took it meanwhile"
                               f" (held by {holder}): this run stops")
            logger.info("took the run lock again")
            return

    def close(self) -> None:
        """Release the lock and close its connection (idempotent)."""
        self._closing.set()
        if self.is_alive():
            self.join(LOCK_CLOSE_JOIN_S)
        else:
            self._release()

    def _release(self) -> None:
        # Unlocked before the connection closes: the server ends a session after the client has gone,
        # and a run started right after this one must not find the lock still held.
        if self._conn.closed:
            return
        try:
            self._conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        except psycopg.Error:
            pass  # a broken connection holds no lock
        self._conn.close()
