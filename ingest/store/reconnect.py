"""Connections that outlive a database blip: reconnect with backoff, give up after a bounded outage.

A PostgreSQL restart, a failover or a proxy's idle cut ends every connection of the run. Like
psycopg_pool's `reconnect_timeout`, the run keeps trying for a bounded time (DB_RECONNECT_TIMEOUT) and
only an outage that lasts longer ends it. The outage is the database's, not one connection's: every
connection of the run counts from the same first failure, so once one has waited the whole time, the
others give up at their next failed attempt instead of waiting it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
from loguru import logger

from ingest.errors import DatabaseError, Stopped
from ingest.signals import StopFlag
from ingest.store.database import one_line, open_connection, where

FIRST_DELAY_S = 0.25  # s; a proxy's idle cut is over at once: the first retry comes almost immediately
MAX_DELAY_S = 5.0  # s; a restart takes seconds to minutes: keep looking this often
# A statement that loses its connection this many times in a row is not meeting a blip: it is the cause.
MAX_REPLAYS = 5
# A server that answers "FATAL" refused us (password, database name, rights): retrying cannot help,
# except for the refusals of a server that is starting, stopping or full.
PASSING_REFUSALS = ("starting up", "shutting down", "in recovery", "not yet accepting", "not accepting",
                    "too many clients", "connection slots", "terminating connection")

T = TypeVar("T")


def passing(exc: psycopg.Error) -> bool:
    """True for a failure to connect that may pass (no answer, a server starting); False for a refusal."""
    text = str(exc)
    return "FATAL:" not in text or any(phrase in text for phrase in PASSING_REFUSALS)


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt `attempt + 1` (attempt 0 failed first): doubling up to MAX_DELAY_S."""
    return min(MAX_DELAY_S, FIRST_DELAY_S * 2**attempt)


class Reconnector:
    """Opens connections to one database, waiting out an outage of up to `timeout_s` (thread-safe).

    `wait(seconds)` returns True when the run is stopping (a signal): the wait ends and Stopped is
    raised. Tests inject `clock` and `wait` that move a fake clock.
    """

    def __init__(self, url: str, timeout_s: float, *, stop: StopFlag | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], bool] | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._stop = stop or StopFlag()
        self._clock = clock
        self._wait = wait or self._stop.event.wait
        self._down_since: float | None = None  # the first failed attempt of the outage going on
        self._lock = threading.Lock()

    def connect(self, role: str, *, autocommit: bool = False) -> psycopg.Connection:
        """A new connection; raises DatabaseError on a refusal or once the outage outlasts timeout_s."""
        attempt = 0
        while True:
            try:
                conn = open_connection(self.url, autocommit=autocommit, role=role)
            except psycopg.Error as exc:
                if not passing(exc):
                    raise DatabaseError(f"cannot connect to the database: {one_line(exc)}") from exc
                delay, outage_began = self._delay(attempt, exc)
                if outage_began:  # said once per outage, however many connections wait it out
                    logger.warning("database {} unreachable ({}): trying again for up to {:g} s",
                                   where(self.url), one_line(exc), self.timeout_s)
                if self._wait(delay):
                    raise Stopped(self._stop.signum) from None
                attempt += 1
                continue
            with self._lock:
                down_for = None if self._down_since is None else self._clock() - self._down_since
                self._down_since = None
            if down_for is not None:
                logger.info("database {} reachable again after {:.1f} s ({} connection)", where(self.url),
                            down_for, role)
            return conn

    def _delay(self, attempt: int, exc: psycopg.Error) -> tuple[float, bool]:
        """How long to wait before trying again, and whether this failure began the outage; raises
        DatabaseError once the outage lasted timeout_s."""
        now = self._clock()
        with self._lock:
            began = self._down_since is None
            since = self._down_since = now if self._down_since is None else self._down_since
        down_for = now - since
        if down_for >= self.timeout_s:
            raise DatabaseError(
                f"the database at {where(self.url)} stayed unreachable for {self.timeout_s:g} s"
                f" (DB_RECONNECT_TIMEOUT): {one_line(exc)}"
            ) from exc
        return min(backoff(attempt), self.timeout_s - down_for), began


class Link:
    """One connection of the run that a blip does not end: `run(fn)` replays `fn` on a new connection.

    `fn` must be one transaction (or read only): after a lost connection nothing of it was committed, so
    running it again whole is safe. `prepare` sets up each new connection (session settings, temp tables).
    Used by one thread at a time.
    """

    def __init__(self, database: Reconnector, role: str, *, autocommit: bool = False,
                 prepare: Callable[[psycopg.Connection], None] | None = None) -> None:
        self._database = database
        self._role = role
        self._autocommit = autocommit
        self._prepare = prepare
        self._conn: psycopg.Connection | None = None

    def run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """fn(connection), again on a new connection when the connection is lost (at most MAX_REPLAYS times)."""
        for replay in range(MAX_REPLAYS + 1):
            try:
                conn = self._connection()
                return fn(conn)
            except psycopg.Error as exc:
                if self._conn is None or not self._conn.broken:
                    raise
                self._drop()
                if replay == MAX_REPLAYS:
                    raise DatabaseError(f"the {self._role} connection was lost {MAX_REPLAYS + 1} times in a row"
                                        f" on the same statement: {one_line(exc)}") from exc
                logger.warning("{} connection to the database lost ({}): reconnecting", self._role, one_line(exc))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._drop()

    def _connection(self) -> psycopg.Connection:
        if self._conn is None:
            self._conn = self._database.connect(self._role, autocommit=self._autocommit)
            if self._prepare is not None:
                self._prepare(self._conn)
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
