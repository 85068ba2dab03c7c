"""Reconnecting through a database blip: backoff on a fake clock, replay on a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest

from ingest.errors import DatabaseError, Stopped
from ingest.signals import StopFlag
from ingest.store.reconnect import MAX_DELAY_S, Link, Reconnector, backoff

NOWHERE = "postgresql://postgres@127.0.0.1:9/nothing"  # nothing listens on port 9: refused at once


class FakeTime:
    """A clock that moves only when the code under test waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


def test_backoff_doubles_up_to_its_ceiling() -> None:
    assert [backoff(n) for n in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, MAX_DELAY_S, MAX_DELAY_S]


def test_an_unreachable_database_is_tried_until_the_timeout_then_named_in_one_line() -> None:
    fake = FakeTime()
    database = Reconnector(NOWHERE, 20, clock=fake.clock, wait=fake.wait)
    with pytest.raises(DatabaseError) as caught:
        database.connect("control")
    assert fake.waits == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 2.25]  # the last wait ends at the timeout
    assert str(caught.value).startswith(
        "the database at 127.0.0.1:9/nothing stayed unreachable for 20 s (DB_RECONNECT_TIMEOUT): connection failed:")
    assert "\n" not in str(caught.value)


def test_an_outage_is_counted_once_for_every_connection() -> None:
    fake = FakeTime()
    database = Reconnector(NOWHERE, 10, clock=fake.clock, wait=fake.wait)
    with pytest.raises(DatabaseError):
        database.connect("writer")
    waited = len(fake.waits)
    with pytest.raises(DatabaseError, match="stayed unreachable for 10 s"):
        database.connect("control")  # the database has been away 10 s already: no second wait
    assert len(fake.waits) == waited


def test_a_refusal_is_not_waited_out(database_url: str) -> None:
    params = psycopg.conninfo.conninfo_to_dict(database_url)
    params["dbname"] = "no_such_database_here"
    fake = FakeTime()
    database = Reconnector(psycopg.conninfo.make_conninfo(**params), 300, clock=fake.clock, wait=fake.wait)
    refused = '^cannot connect to the database: .*"no_such_database_here" does not exist'
    with pytest.raises(DatabaseError, match=refused):
        database.connect("control")
    assert fake.waits == []


def test_a_signal_ends_the_wait() -> None:
    stop = StopFlag()
    stop.trigger(15)
    with pytest.raises(Stopped):
        Reconnector(NOWHERE, 300, stop=stop).connect("control")


def test_a_statement_whose_connection_was_ended_runs_again_on_a_new_one(database_url: str) -> None:
    prepared: list[int] = []
    link = Link(Reconnector(database_url, 30), "control",
                prepare=lambda conn: prepared.append(conn.info.backend_pid))
    first = link.run(lambda conn: conn.execute("SELECT pg_backend_pid()").fetchone())
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", first)
    calls: list[int] = []

    def insert(conn: psycopg.Connection) -> int:
        calls.append(conn.info.backend_pid)
        with conn.transaction():
            conn.execute("CREATE TABLE IF NOT EXISTS replayed (n int)")
            conn.execute("INSERT INTO replayed VALUES (1)")
        return conn.info.backend_pid

    second = link.run(insert)
    link.close()
    assert prepared == [first[0], second]  # the new connection was prepared like the first
    assert calls == [first[0], second] and second != first[0]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM replayed").fetchone() == (1,)


def test_an_error_on_a_live_connection_is_not_replayed(database_url: str) -> None:
    link = Link(Reconnector(database_url, 30), "control")
    calls = []

    def failing(conn: psycopg.Connection) -> None:
        calls.append(1)
        conn.execute("SELECT 1/0")

    with pytest.raises(psycopg.errors.DivisionByZero):
        link.run(failing)
    link.close()
    assert calls == [1]
