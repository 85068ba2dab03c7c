"""The writer against a real PostgreSQL: COPY → staging → upsert + checkpoint in one transaction."""

import queue
import threading
import uuid

import orjson
import psycopg
import pytest

from ingest.api.client import parse_envelope
from ingest.errors import DatabaseError
from ingest.plan.partitions import Partition
from ingest.stats import Stats
from ingest.store import checkpoint
from ingest.store.page_commit import PageCommit
from ingest.store.reconnect import Reconnector
from ingest.store.rows import parse_timestamps, transform_events
from ingest.store.writer import SENTINEL, STAGING_DDL, Writer, commit_batch


def event(n: int, ts="2026-01-27T19:20:12.369Z", **extra) -> dict:
    e = {"id": str(uuid.UUID(int=n)), "sessionId": str(uuid.UUID(int=10**6 + n)),
         "userId": str(uuid.UUID(int=10**7 + n)),
         "type": "click", "name": "event_abc123", "properties": {"page": "/home\t\\x"}, "timestamp": ts,
         "session": {"id": str(uuid.UUID(int=10**6 + n)), "deviceType": "mobile", "browser": "Chrome"}}
    e.update(extra)
    return e


def page_of(events: list, pid=1, cursor="c1", pos=(1769541612369, "x"), last=False) -> PageCommit:
    rows = transform_events(events, parse_timestamps(events))
    return PageCommit(pid, cursor, pos[0], pos[1], last, tuple(rows.lines), tuple(rows.quarantined),
                rows.events_with_nulls, source="test")


@pytest.fixture
def conn(database_url: str):
    with psycopg.connect(database_url) as c:
        checkpoint.create_schema(c)
        checkpoint.start_pass(c, checkpoint.FULL, [Partition(1, None, None), Partition(2, 0, 100)], None)
        c.execute(STAGING_DDL)
        c.commit()
        yield c


def test_rows_land_typed_with_the_raw_event_and_checkpoint_moves(conn) -> None:
    stats = Stats()
    events = [event(1), event(2, ts=1769541612000), event(3, ts=" 1769541612\u200b", type=7)]
    commit_batch(conn, [page_of(events, pos=(1769541612000, str(uuid.UUID(int=3))))], stats)
    rows = conn.execute(
        "SELECT id::text, event_type, (extract(epoch FROM \"timestamp\") * 1000)::bigint, data FROM ingested_events"
        " ORDER BY id").fetchall()
    assert rows == [
        (str(uuid.UUID(int=1)), "click", 1769541612369, events[0]),
        (str(uuid.UUID(int=2)), "click", 1769541612000, events[1]),
        (str(uuid.UUID(int=3)), None, 1769541612000, events[2]),
    ]
    part = conn.execute("SELECT cursor, pos_ms, pos_id, done, events FROM ingest_partitions WHERE partition_id = 1")
    assert part.fetchone() == ("c1", 1769541612000, str(uuid.UUID(int=3)), False, 3)
    assert (stats.stored, stats.duplicates, stats.with_nulls) == (3, 0, 1)


def test_events_with_json_orjson_refuses_are_stored_as_valid_jsonb(conn) -> None:
    plain = {k: v for k, v in event(1).items() if k != "properties"}
    odd = orjson.dumps(plain)[:-1] + (
        rb',"properties":{"label":"broken \ud83d emoji","nan":NaN,"inf":-Infinity,"huge":1e400,'
        rb'"big":18446744073709551616,"past_numeric":1e131072}}'
    )
    body = b'{"data":[' + odd + b"," + orjson.dumps(event(2)) + b'],"pagination":{"hasMore":false}}'
    stats = Stats()
    commit_batch(conn, [page_of(parse_envelope(body).events)], stats)
    rows = conn.execute("SELECT id::text, event_type, data->'properties' FROM ingested_events ORDER BY id").fetchall()
    assert rows == [
        (str(uuid.UUID(int=1)), "click", {"label": "broken \ufffd emoji", "nan": "NaN", "inf": "-Infinity",
                                          "huge": 10**400, "big": 2**64, "past_numeric": "1e131072"}),
        (str(uuid.UUID(int=2)), "click", {"page": "/home\t\\x"}),
    ]
    # the tokens cast back to the numbers the server meant
    assert conn.execute("SELECT (data->'properties'->>'nan')::float8::text, (data->'properties'->>'inf')::float8"
                        " FROM ingested_events WHERE data->'properties' ? 'nan'").fetchone() == ("NaN", float("-inf"))
    assert (stats.stored, stats.quarantined) == (2, 0)


def test_replays_and_reruns_are_absorbed_by_the_key(conn) -> None:
    stats = Stats()
    commit_batch(conn, [page_of([event(1), event(2)]), page_of([event(2), event(3)], last=True)], stats)
    commit_batch(conn, [page_of([event(1), event(3)], cursor="c9")], stats)
    assert conn.execute("SELECT count(*) FROM ingested_events").fetchone() == (3,)
    assert (stats.stored, stats.duplicates) == (3, 3)
    assert conn.execute("SELECT cursor, done FROM ingest_partitions WHERE partition_id = 1").fetchone() == ("c9", True)


def test_events_without_usable_id_are_quarantined_with_reason_and_payload(conn) -> None:
    stats = Stats()
    commit_batch(conn, [page_of([event(1), event(2, id="e1b2-broken"), "not an object", event(4, id=None)])], stats)
    rows = conn.execute("SELECT reason, payload FROM ingest_quarantine ORDER BY quarantine_id").fetchall()
    assert [r[0].split(":")[0] for r in rows] == ["no usable id", "event is not a JSON object", "no usable id"]
    assert b"e1b2-broken" in rows[0][1]
    assert conn.execute("SELECT count(*) FROM ingested_events").fetchone() == (1,)
    assert stats.quarantined == 3


def test_a_checkpoint_for_an_unknown_partition_fails_the_batch(conn) -> None:
    unknown = PageCommit(99, "c", 1, "x", False, page_of([event(5)]).lines)  # partition 99 does not exist
    with pytest.raises(DatabaseError, match="^checkpoint for partition 99 matched no row"):
        commit_batch(conn, [page_of([event(6)]), unknown], Stats())
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM ingested_events").fetchone() == (0,)
    assert conn.execute("SELECT cursor FROM ingest_partitions WHERE partition_id = 1").fetchone() == (None,)


def test_a_failed_batch_leaves_neither_rows_nor_checkpoint(conn) -> None:
    bad = page_of([event(5)], pid=2, cursor="c2")
    good = page_of([event(6)])
    conn.execute("ALTER TABLE ingest_partitions ADD CONSTRAINT no_c CHECK (cursor IS DISTINCT FROM 'boom')")
    conn.commit()
    with pytest.raises(psycopg.errors.CheckViolation):
        commit_batch(conn, [good, bad, page_of([event(7)], cursor="boom")], Stats())
    conn.rollback()
    assert conn.execute("SELECT count(*) FROM ingested_events").fetchone() == (0,)
    assert conn.execute("SELECT cursor FROM ingest_partitions WHERE partition_id = 1").fetchone() == (None,)


def test_a_damaged_event_met_again_is_quarantined_once_with_its_id(conn) -> None:
    stats = Stats()
    nul = event(8, properties={"note": "a\u0000b"})
    commit_batch(conn, [page_of([event(2, id="e1b2-broken"), nul])], stats)
    commit_batch(conn, [page_of([event(2, id="e1b2-broken"), nul], cursor="c2")], stats)
    rows = conn.execute("SELECT event_id::text, reason FROM ingest_quarantine ORDER BY quarantine_id").fetchall()
    assert rows == [(None, "no usable id: 'e1b2-broken'"),
                    (str(uuid.UUID(int=8)), "payload holds a NUL character, which jsonb cannot store")]
    assert stats.quarantined == 2


def test_the_top_page_records_the_pass_newest_event_and_the_store_anchor(conn) -> None:
    conn.execute("INSERT INTO ingest_origin (base_url, key_fingerprint) VALUES ('http://api', 'f')")
    conn.commit()
    top = PageCommit(1, "c1", 5, "x", False, (), newest=(1769541612369, str(uuid.UUID(int=1))))
    commit_batch(conn, [top], Stats())
    assert conn.execute("SELECT newest_ms FROM ingest_passes").fetchone() == (1769541612369,)
    assert conn.execute("SELECT anchor_ms, anchor_id::text FROM ingest_origin").fetchone() == (
        1769541612369, str(uuid.UUID(int=1)))


def test_writer_thread_commits_everything_before_the_sentinel(database_url: str, conn) -> None:
    pages: queue.Queue = queue.Queue(maxsize=2)
    stats = Stats()
    writer = Writer(Reconnector(database_url, 0), pages, stats)
    writer.start()
    for n in range(0, 50, 5):
        pages.put(page_of([event(n + k) for k in range(5)]))
    pages.put(SENTINEL)
    writer.join(10)
    assert (writer.is_alive(), writer.error, stats.stored) == (False, None, 50)
    assert conn.execute("SELECT count(*) FROM ingested_events").fetchone() == (50,)


class WaitsRecorded(queue.Queue):
    """A page queue that notes, the first time the writer finds it empty after taking a page, how many
    events were stored by then."""

    def __init__(self, stats: Stats) -> None:
        super().__init__()
        self.stats = stats
        self.taken = 0
        self.stored_at_next_wait: int | None = None
        self.waited_again = threading.Event()

    def get(self, block: bool = True, timeout: float | None = None):
        if self.taken and self.empty() and not self.waited_again.is_set():
            self.stored_at_next_wait = self.stats.stored
            self.waited_again.set()
        item = super().get(block, timeout)
        self.taken += 1
        return item


def test_a_page_that_arrives_alone_is_committed_before_the_writer_waits_again(database_url: str, conn) -> None:
    """A kill loses only the pages in flight: none waits in the writer for company (issue 19)."""
    stats = Stats()
    pages = WaitsRecorded(stats)
    writer = Writer(Reconnector(database_url, 0), pages, stats)
    writer.start()
    pages.put(page_of([event(n) for n in range(5)]))
    assert pages.waited_again.wait(60)
    pages.put(SENTINEL)
    writer.join(60)
    assert (pages.stored_at_next_wait, writer.error) == (5, None)


class WatchedQueue(queue.Queue):
    """A page queue that notes a writer asking for more after it took the sentinel (there is only one)."""

    def __init__(self, settled: threading.Event) -> None:
        super().__init__()
        self.sentinel_taken = False
        self.asked_after_sentinel = False
        self._settled = settled

    def get(self, block: bool = True, timeout: float | None = None):
        if self.sentinel_taken:
            self.asked_after_sentinel = True
            self._settled.set()
        item = super().get(block, timeout)
        if item is SENTINEL:
            self.sentinel_taken = True
        return item


def test_a_writer_whose_last_commit_fails_stops_without_a_second_sentinel(database_url: str, conn) -> None:
    conn.execute("ALTER TABLE ingest_partitions ADD CONSTRAINT no_boom CHECK (cursor IS DISTINCT FROM 'boom')")
    conn.commit()
    settled = threading.Event()  # the writer ended, or asked for a page after the only sentinel
    pages = WatchedQueue(settled)
    pages.put(page_of([event(1)], cursor="boom"))  # held in the batch until the sentinel, then refused
    pages.put(SENTINEL)
    writer = Writer(Reconnector(database_url, 0), pages, Stats())
    run = writer.run
    writer.run = lambda: (run(), settled.set())  # type: ignore[method-assign]
    writer.start()
    assert settled.wait(60)
    pages.put(SENTINEL)  # lets a writer waiting for a second sentinel end
    writer.join(60)
    assert (pages.asked_after_sentinel, type(writer.error), writer.is_alive()) == (False, DatabaseError, False)
