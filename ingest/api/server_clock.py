"""The API server's wall clock, as its answers tell it: what a cursor's expiry is measured against.

The server compares a cursor's `exp` with its own clock. A cursor we build with `exp` from a local clock
that runs minutes behind is expired on arrival, and rebuilding it the same way never helps; one that
runs ahead asks for a lifetime the server never grants. So built cursors take the server's time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime


class ServerClock:
    """Epoch time on the server: the last time it told us, plus the monotonic time since.

    Readings come from the server's own cursors (expiry minus lifetime: the very clock that checks
    `exp`) and, until one arrives, from `Date` headers (whole seconds; possibly written by a proxy in
    front of the server). The newest reading wins, so a server whose clock is corrected is followed.
    Before any reading it is the local wall clock. Thread-safe: every fetcher feeds it.
    """

    def __init__(self, wall: Callable[[], float] = time.time, clock: Callable[[], float] = time.monotonic) -> None:
        self._wall = wall
        self._clock = clock
        self._lock = threading.Lock()
        self._anchor: tuple[float, float] | None = None  # (server epoch s, our monotonic s) at a reading
        self._from_cursor = False

    def observe_date(self, value: str | None) -> None:
        """Read an HTTP `Date` header; an absent or unreadable one changes nothing."""
        if not value:
            return
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return
        if when.tzinfo is None:  # the asctime form carries no zone, and every HTTP-date is GMT
            when = when.replace(tzinfo=UTC)
        self._observe(when.timestamp(), from_cursor=False)

    def observe_cursor(self, exp_ms: int, expires_in_s: float) -> None:
        """Read a cursor the server just issued: it expires at `exp_ms` on its clock, `expires_in_s` from now.

        Values that give no time (a lifetime below zero, not finite, or too large for a float) are ignored.
        """
        try:
            server_s = exp_ms / 1000 - expires_in_s
        except OverflowError:
            return
        if expires_in_s >= 0 and math.isfinite(server_s):
            self._observe(server_s, from_cursor=True)

    def now_ms(self) -> int:
        """Epoch milliseconds on the server's clock, as best known."""
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return int(self._wall() * 1000)
        server_s, at = anchor
        return int((server_s + self._clock() - at) * 1000)

    def _observe(self, server_s: float, *, from_cursor: bool) -> None:
        at = self._clock()
        with self._lock:
            if self._from_cursor and not from_cursor:
                return
            self._anchor, self._from_cursor = (server_s, at), from_cursor
