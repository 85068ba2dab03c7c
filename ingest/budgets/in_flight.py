"""How many feed requests may be in flight: every chain's, except in a slow start.

A feed a run spent moments ago may have an empty bucket, and requests sent together into it all land
inside the lockout the first one's 429 opens (early retries, penalised on the live API). A slow start
lets one request fly, one more per success, until the first 429 (or a restored rate) hands the pace to
the pacer. Outside a slow start nothing is limited here: the pacer spaces the requests and the budget's
chains (its rate × page time) bound how many fly. Halving on 429s, as TCP does, would answer the same
429 twice: the pacer already slows to the bucket's rate, and a limit under rate × page time only leaves
tokens unused.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

WAIT_SLICE_S = 0.5  # s; longest wait for a slot before `stop` is looked at again


class AdaptiveConcurrency:
    """In-flight slots: `maximum` of them, or one more per success from one during a slow start."""

    def __init__(self, maximum: int, *, slow_start: bool = False) -> None:
        if maximum < 1:
            raise ValueError(f"need maximum >= 1, got {maximum}")
        self._maximum = maximum
        self._slow_start = slow_start
        self._limit = 1 if slow_start else maximum
        self._in_flight = 0
        self._changed = threading.Condition(threading.Lock())

    @property
    def slow_starting(self) -> bool:
        """True from a slow start until its first 429."""
        with self._changed:
            return self._slow_start

    @property
    def limit(self) -> int:
        """Requests that may be in flight at once, now."""
        with self._changed:
            return self._limit

    @contextmanager
    def slot(self, stop: threading.Event | None = None) -> Iterator[bool]:
        """Hold one of `limit` slots for the duration of a request; blocks until one is free.

        Yields True with the slot held, or False without one if `stop` was set while waiting: then the
        caller must not send.
        """
        with self._changed:
            while self._in_flight >= self._limit and not (stop is not None and stop.is_set()):
                self._changed.wait(WAIT_SLICE_S)
            acquired = self._in_flight < self._limit
            if acquired:
                self._in_flight += 1
        if not acquired:
            yield False
            return
        try:
            yield True
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify()

    def on_success(self) -> None:
        """In a slow start, one more request may fly."""
        with self._changed:
            if self._slow_start and self._limit < self._maximum:
                self._limit += 1
                self._changed.notify()

    def end_slow_start(self) -> None:
        """A pace is known (a 429 answered, or a measured rate restored): the pacer spaces requests from
        here, and the slots a slow start had not opened yet would only keep chains waiting on one another."""
        with self._changed:
            if self._slow_start:
                self._slow_start, self._limit = False, self._maximum
                self._changed.notify_all()

    on_throttled = end_slow_start  # a 429: the bucket's pace is the pacer's to find
