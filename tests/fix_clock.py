"""The one fake clock of the tests: time moves only when the test, or code sleeping on it, moves it.

A monotonic clock (call it, or `mono`) and a wall clock (`wall` in epoch s, `wall_ms`) that read the same
instant; `step_wall` moves the wall clock alone, as NTP or a user does. Thread-safe: fetchers may sleep
on it from several threads.
"""

from __future__ import annotations

import math
import threading

START = 1_000.0  # s on the monotonic clock when a test begins
EPOCH_AT_START = 1_769_541_612.0  # s; the wall clock reads this when the monotonic one reads START


class FakeClock:
    def __init__(self, *, start: float = START, wall_at_start: float = EPOCH_AT_START,
                 wakes_after: float = math.inf) -> None:
        """`wakes_after`: a sleep never lasts longer (one that wakes early, as a stop or a notify does)."""
        self.now = start
        self.sleeps: list[float] = []  # every sleep asked for, in order
        self._wall_minus_mono = wall_at_start - start
        self._wakes_after = wakes_after
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def mono(self) -> float:
        return self()

    def wall(self) -> float:
        with self._lock:
            return self.now + self._wall_minus_mono

    def wall_ms(self) -> int:
        return round(self.wall() * 1000)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += min(seconds, self._wakes_after)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    def step_wall(self, seconds: float) -> None:
        """The wall clock jumps by `seconds`; monotonic time does not move."""
        with self._lock:
            self._wall_minus_mono += seconds
