"""The one writer: pages from the queue → COPY into staging → upsert + checkpoint, one transaction."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from functools import partial

import psycopg
from loguru import logger

from ingest.errors import DatabaseError
from ingest.stats import Stats
from ingest.store.database import one_line
from ingest.store.page_commit import PageCommit
from ingest.store.reconnect import Link, Reconnector

# Rows per transaction at most (~7 MB in hand). A batch is what waits in the queue when the writer is
# free (group commit): pages arriving faster than commits share one, which amortises the upsert's
# per-statement cost, and a page arriving alone is committed at once, so a kill loses only the pages
# still in flight, never one that waited for company.
BATCH_ROWS = 20_000
QUEUE_POLL_S = 0.2  # s; how often a writer with nothing to do looks at the queue again
# On a signal the run must be gone within Docker's 10 s grace: the last commit gets this long.
STOP_JOIN_S = 3.0  # s
LAST_COMMIT_JOIN_S = 60.0  # s; the writer's last commit after the fetchers are done

STAGING_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS ingest_staging ("
    " id uuid, event_type text, ts_ms bigint, session_id uuid, user_id uuid, data jsonb)"
    " ON COMMIT DELETE ROWS"
)
UPSERT = (
    "INSERT INTO ingested_events (id, event_type, \"timestamp\", session_id, user_id, data)"
    " SELECT id, event_type, timestamptz 'epoch' + ts_ms * interval '1 millisecond',"
    " session_id, user_id, data FROM ingest_staging"
    " ON CONFLICT (id) DO NOTHING"
)
CHECKPOINT = (
    "UPDATE ingest_partitions SET cursor = %s, pos_ms = %s, pos_id = %s, done = done OR %s,"
    " events = events + %s, updated_at = now() WHERE partition_id = %s"
)
QUARANTINE = (
    "INSERT INTO ingest_quarantine (payload, reason, source, event_id) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT ((md5(payload))) DO NOTHING"
)
# The top of the API's order, seen by a pass: its watermark, and the store's dataset identity the first time.
PASS_NEWEST = (
    "UPDATE ingest_passes SET newest_ms = GREATEST(newest_ms, %s)"
    " WHERE pass_id = (SELECT pass_id FROM ingest_partitions WHERE partition_id = %s)"
)
ORIGIN_ANCHOR = "UPDATE ingest_origin SET anchor_ms = %s, anchor_id = %s WHERE anchor_ms IS NULL"


def _prepare(conn: psycopg.Connection) -> None:
    """A new writer connection: its session settings and its staging table."""
    # Data and checkpoint commit together, so a commit lost in a database crash loses both and the
    # rerun fetches that batch again: waiting for each WAL flush buys nothing.
    conn.execute("SET synchronous_commit = off")
    conn.execute(STAGING_DDL)
    conn.commit()


SENTINEL = None  # put on the queue after the last page: the writer commits what it holds and stops


class Writer(threading.Thread):
    """Consumes the page queue until the sentinel; re-raise `error` in the main thread.

    A batch whose connection is lost is written again, whole, on a new one: it was not committed, and
    its pages are still in hand (see reconnect.Link).
    """

    def __init__(self, database: Reconnector, pages: queue.Queue, stats: Stats) -> None:
        super().__init__(name="writer", daemon=True)
        self._link = Link(database, "writer", prepare=_prepare)
        self._pages = pages
        self._stats = stats
        self.error: BaseException | None = None
        self._sentinel_taken = False  # the last item came: after a failure there is nothing left to drain

    def run(self) -> None:
        try:
            self._consume()
        except psycopg.Error as exc:
            self.error = DatabaseError(f"database write failed: {one_line(exc)}")
        except BaseException as exc:  # crosses to the main thread, never dies silently
            self.error = exc
        finally:
            self._link.close()
            self._drain()

    def finish(self, *, stopping: bool) -> None:
        """Hand the writer its sentinel and wait for its last commit.

        When stopping, a commit still running after STOP_JOIN_S is left behind (the database rolls it back
        when the process ends: data and checkpoint together), which is no error.
        """
        deadline = time.monotonic() + (STOP_JOIN_S if stopping else LAST_COMMIT_JOIN_S)
        while self.is_alive() and time.monotonic() < deadline:
            try:
                self._pages.put(SENTINEL, timeout=QUEUE_POLL_S)
                break
            except queue.Full:
                continue
        self.join(max(0.0, deadline - time.monotonic()))
        if self.is_alive() and not stopping:
            self.error = self.error or DatabaseError("the writer did not finish its last commit in time")

    def _consume(self) -> None:
        batch: list[PageCommit] = []
        rows = 0
        while True:
            try:
                item = self._pages.get(timeout=QUEUE_POLL_S)
            except queue.Empty:
                continue
            if item is SENTINEL:
                self._sentinel_taken = True
                self._commit(batch)
                return
            batch.append(item)
            rows += len(item.lines)
            if rows >= BATCH_ROWS or self._pages.empty():
                self._commit(batch)
                batch, rows = [], 0

    def _commit(self, batch: list[PageCommit]) -> None:
        self._link.run(partial(commit_batch, pages=batch, stats=self._stats))

    def _drain(self) -> None:
        """After a failure, keep taking pages so no fetcher blocks forever on a full queue."""
        if self.error is None or self._sentinel_taken:
            return
        while True:
            try:
                if self._pages.get(timeout=QUEUE_POLL_S) is SENTINEL:
                    return
            except queue.Empty:
                continue


def commit_batch(conn: psycopg.Connection, pages: list[PageCommit], stats: Stats) -> None:
    """Write a batch and its checkpoints in one transaction; nothing of it is visible on failure."""
    if not pages:
        return
    staged = sum(len(p.lines) for p in pages)
    with conn.transaction(), conn.cursor() as cur:
        if staged:
            with cur.copy(
                "COPY ingest_staging (id, event_type, ts_ms, session_id, user_id, data) FROM STDIN"
            ) as copy:
                for page in pages:
                    copy.write(b"".join(page.lines))
            cur.execute(UPSERT)
            inserted = cur.rowcount
        else:
            inserted = 0
        quarantined = _quarantine(cur, pages)
        _checkpoint(cur, pages)
    stats.committed(
        stored=inserted,
        duplicates=staged - inserted,
        quarantined=quarantined,
        with_nulls=sum(p.events_with_nulls for p in pages),
    )
    logger.debug("committed {} pages: {} new, {} duplicates", len(pages), inserted, staged - inserted)


def _quarantine(cur: psycopg.Cursor, pages: Iterable[PageCommit]) -> int:
    """Insert what cannot be stored; the number of new quarantine rows (a payload seen before is skipped)."""
    records = [(q.payload, q.reason, p.source, q.event_id) for p in pages for q in p.quarantined]
    if not records:
        return 0
    cur.executemany(QUARANTINE, records)
    return cur.rowcount


def _checkpoint(cur: psycopg.Cursor, pages: list[PageCommit]) -> None:
    cur.executemany(
        CHECKPOINT,
        [(p.next_cursor, p.pos_ms, p.pos_id, p.last, len(p.lines), p.partition_id) for p in pages],
    )
    if cur.rowcount != len(pages):
        # Rows whose position is recorded nowhere: a rerun would not know they were fetched, and a pass
        # could be closed over a range nobody walked. The whole batch is rolled back.
        ids = sorted({p.partition_id for p in pages})
        cur.execute("SELECT partition_id FROM ingest_partitions WHERE partition_id = ANY(%s)", (ids,))
        known = {pid for (pid,) in cur.fetchall()}
        unknown = ", ".join(str(pid) for pid in ids if pid not in known)
        raise DatabaseError(f"checkpoint for partition {unknown} matched no row of ingest_partitions:"
                            " the batch is rolled back")
    for page in pages:
        if page.newest is not None:
            cur.execute(PASS_NEWEST, (page.newest[0], page.partition_id))
            cur.execute(ORIGIN_ANCHOR, page.newest)
