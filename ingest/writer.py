"""The one writer: pages from the queue → COPY into staging → upsert + checkpoint, one transaction."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable

import psycopg
from loguru import logger

from ingest.errors import DatabaseError
from ingest.pages import Page, PlanChange
from ingest.stats import Stats

# Rows per transaction. Larger batches amortise the upsert's per-statement cost; 20,000 rows of
# ~350 bytes is ~7 MB in hand, committed at most every BATCH_MAX_AGE_S so a slow API still
# checkpoints often.
BATCH_ROWS = 20_000
BATCH_MAX_AGE_S = 2.0  # s; a page waits at most this long for company before it is committed
QUEUE_POLL_S = 0.2  # s; how often an idle writer looks at the clock

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

SENTINEL = None  # put on the queue after the last page: the writer commits what it holds and stops


class Writer(threading.Thread):
    """Consumes the page queue until the sentinel; re-raise `error` in the main thread."""

    def __init__(self, database_url: str, pages: queue.Queue, stats: Stats) -> None:
        super().__init__(name="writer", daemon=True)
        self._url = database_url
        self._pages = pages
        self._stats = stats
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self._url) as conn:
                # Data and checkpoint commit together, so a commit lost in a database crash loses both
                # and the rerun fetches that batch again: waiting for each WAL flush buys nothing.
                conn.execute("SET synchronous_commit = off")
                conn.execute(STAGING_DDL)
                conn.commit()
                self._consume(conn)
        except psycopg.Error as exc:
            self.error = DatabaseError(f"database write failed: {exc}".strip())
        except BaseException as exc:  # crosses to the main thread, never dies silently
            self.error = exc
        finally:
            self._drain()

    def _consume(self, conn: psycopg.Connection) -> None:
        batch: list[Page | PlanChange] = []
        rows = 0
        first_at = 0.0
        while True:
            try:
                item = self._pages.get(timeout=QUEUE_POLL_S)
            except queue.Empty:
                item = ...
            if item is SENTINEL:
                commit_batch(conn, batch, self._stats)
                return
            if item is not ...:
                if not batch:
                    first_at = time.monotonic()
                batch.append(item)
                rows += len(item.lines) if isinstance(item, Page) else 0
            if batch and (rows >= BATCH_ROWS or time.monotonic() - first_at >= BATCH_MAX_AGE_S):
                commit_batch(conn, batch, self._stats)
                batch, rows = [], 0

    def _drain(self) -> None:
        """After a failure, keep taking pages so no fetcher blocks forever on a full queue."""
        if self.error is None:
            return
        while True:
            try:
                if self._pages.get(timeout=QUEUE_POLL_S) is SENTINEL:
                    return
            except queue.Empty:
                continue


def commit_batch(conn: psycopg.Connection, batch: list[Page | PlanChange], stats: Stats) -> None:
    """Write a batch and its checkpoints in one transaction; nothing of it is visible on failure."""
    if not batch:
        return
    pages = [item for item in batch if isinstance(item, Page)]
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
        _checkpoint(cur, batch)
    stats.committed(
        stored=inserted,
        duplicates=staged - inserted,
        quarantined=quarantined,
        with_nulls=sum(p.events_with_nulls for p in pages),
        pages=len(pages),
    )
    logger.debug("committed {} pages: {} new, {} duplicates", len(pages), inserted, staged - inserted)


def _quarantine(cur: psycopg.Cursor, pages: Iterable[Page]) -> int:
    records = [(q.payload, q.reason, p.source) for p in pages for q in p.quarantined]
    if records:
        cur.executemany(
            "INSERT INTO ingest_quarantine (payload, reason, source) VALUES (%s, %s, %s)", records
        )
    return len(records)


def _checkpoint(cur: psycopg.Cursor, batch: list[Page | PlanChange]) -> None:
    for item in batch:
        if isinstance(item, PlanChange):
            cur.executemany("UPDATE ingest_partitions SET lo_ms = %s WHERE partition_id = %s",
                            [(lo, pid) for pid, lo in item.set_lower])
            cur.executemany("INSERT INTO ingest_partitions (partition_id, lo_ms, hi_ms) VALUES (%s, %s, %s)",
                            list(item.create))
            cur.executemany("UPDATE ingest_partitions SET done = true WHERE partition_id = %s",
                            [(pid,) for pid in item.finish])
        else:
            cur.execute(
                CHECKPOINT,
                (item.next_cursor, item.pos_ms, item.pos_id, item.last, len(item.lines), item.partition_id),
            )
