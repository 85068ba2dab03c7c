"""How many requests may be in flight to an endpoint that publishes no rate limit (the feed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

# One 429 can be a stray; the feed's throttling, where it exists, answers in storms.
SHRINK_AFTER_429S = 2  # consecutive 429s
# A feed page takes ~4 s, so with a few workers this probes one step up every ~20-30 s:
# slow enough to settle under a soft limit (~40 requests/min reported) rather than oscillate across it.
GROW_AFTER_SUCCESSES = 20  # consecutive successes
WAIT_SLICE_S = 0.5  # s; longest wait for a slot before `stop` is looked at again


class AdaptiveConcurrency:
    """A concurrency limit that halves on runs of 429s and creeps back up on runs of successes.

    Like TCP's congestion window, it reacts once per episode: a 429 for a request that entered its slot
    before the latest halving is already accounted for and is not counted again. That is recognised per
    thread, so call `on_throttled` from the thread that held the slot.
    """

    def __init__(
        self,
        maximum: int,
        *,
        initial: int | None = None,
        minimum: int = 1,
        shrink_after: int = SHRINK_AFTER_429S,
        grow_after: int = GROW_AFTER_SUCCESSES,
        slow_start: bool = False,
    ) -> None:
        """`initial` defaults to `maximum`: most reports saw the feed unthrottled, and 429s shrink it fast.

        `slow_start`: begin at `minimum` and add a slot per success until the first 429, then allow
        `maximum` (the pacer spaces requests from then on) — for a feed a run spent moments ago, whose
        bucket may be empty: requests sent together into an empty bucket all land inside the lockout the
        first one's 429 opens (early retries, penalized on the live API).
        """
        initial = minimum if slow_start else maximum if initial is None else initial
        self._slow_start = slow_start
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError(f"need 1 <= minimum <= initial <= maximum, got {minimum}, {initial}, {maximum}")
        if shrink_after < 1 or grow_after < 1:
            raise ValueError(f"shrink_after and grow_after must be >= 1, got {shrink_after}, {grow_after}")
        self._maximum = maximum
        self._minimum = minimum
        self._shrink_after = shrink_after
        self._grow_after = grow_after
        self._limit = initial
        self._in_flight = 0
        self._successes = 0
        self._throttles = 0
        self._shrinks = 0  # counts halvings, to tell a 429 of the old episode from a new one
        self._changed = threading.Condition(threading.Lock())
        self._local = threading.local()

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
        caller must not send. A smaller limit takes effect as requests in flight finish.
        """
        with self._changed:
            while self._in_flight >= self._limit and not (stop is not None and stop.is_set()):
                self._changed.wait(WAIT_SLICE_S)
            acquired = self._in_flight < self._limit
            if acquired:
                self._in_flight += 1
                self._local.episode = self._shrinks
        if not acquired:
            yield False
            return
        try:
            yield True
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify()

    def end_slow_start(self) -> None:
        """A pace is known (a measured rate restored): the pacer spaces requests, every slot may be used."""
        with self._changed:
            self._end_slow_start()

    def _end_slow_start(self) -> None:
        # From here the pacer spaces requests by a rate, and the slots a slow start had not opened yet
        # would only keep chains waiting on one another.
        if self._slow_start:
            self._slow_start, self._limit = False, self._maximum
            self._changed.notify_all()

    def on_success(self) -> None:
        """A request succeeded: after `grow_after` in a row, allow one more in flight (up to `maximum`)."""
        with self._changed:
            self._throttles = 0
            self._successes += 1
            if self._successes >= self._grow_after or self._slow_start:
                self._successes = 0
                if self._limit < self._maximum:
                    self._limit += 1
                    self._changed.notify()

    def on_throttled(self) -> None:
        """A request got 429: after `shrink_after` in a row, halve the limit (down to `minimum`)."""
        with self._changed:
            self._successes = 0
            if self._slow_start:
                self._end_slow_start()
                return
            if getattr(self._local, "episode", self._shrinks) < self._shrinks:
                return  # sent at the old concurrency; the halving already answered it
            self._throttles += 1
            if self._throttles >= self._shrink_after:
                self._throttles = 0
                self._shrinks += 1
                self._limit = max(self._minimum, self._limit // 2)
