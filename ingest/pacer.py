"""Spacing between requests to an endpoint that publishes no rate limit but answers 429 (the feed).

A server-side token bucket (the feed's reported soft limit: ~40 requests/min, bursts of ~15) cannot be
read from headers, only inferred from its 429s. The pacer starts unpaced (the burst is free), and on a
429 spaces requests by the Retry-After the server gave: a drained token bucket asks for about one
refill interval, rounded up to whole seconds. Runs of successes then shorten the spacing a little and
429s lengthen it, so it settles just under the server's rate instead of storming it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Erring fast is cheap: a 429 costs no token of the server's bucket, and tokens keep accruing while we
# pause; erring slow wastes capacity for good. So the spacing probes down quickly and backs off gently.
SPEEDUP_AFTER = 3  # consecutive successes before the spacing shrinks
SPEEDUP_FACTOR = 0.9  # spacing × this after such a run
SLOWDOWN_FACTOR = 1.15  # spacing × this after a 429; the first 429 starts from its Retry-After
MIN_SPACING_S = 0.05  # s; below this the pacer switches itself off again (no limit in sight)
SLEEP_SLICE_S = 0.5  # s; longest single sleep, so a stop request is seen


class Pacer:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._spacing = 0.0  # s between request starts; 0: unpaced
        self._next_at = float("-inf")
        self._successes = 0

    @property
    def spacing_s(self) -> float:
        with self._lock:
            return self._spacing

    def rate_per_s(self) -> float | None:
        """Requests per second the learned spacing allows (None while unpaced)."""
        with self._lock:
            return 1.0 / self._spacing if self._spacing else None

    def acquire(self, stop: threading.Event | None = None) -> None:
        """Block until this request's turn; returns early (no turn taken) once `stop` is set."""
        while stop is None or not stop.is_set():
            with self._lock:
                now = self._clock()
                wait = self._next_at - now
                if wait <= 0:
                    self._next_at = max(now, self._next_at) + self._spacing if self._spacing else now
                    return
            self._sleep(min(wait, SLEEP_SLICE_S))

    def on_success(self) -> None:
        with self._lock:
            if not self._spacing:
                return
            self._successes += 1
            if self._successes >= SPEEDUP_AFTER:
                self._successes = 0
                self._spacing *= SPEEDUP_FACTOR
                if self._spacing < MIN_SPACING_S:
                    self._spacing = 0.0

    def on_throttled(self, retry_after_s: float | None, resume_at: float) -> None:
        """A 429: lengthen the spacing; the next request starts no earlier than `resume_at` (monotonic)."""
        with self._lock:
            self._successes = 0
            if self._spacing:
                self._spacing *= SLOWDOWN_FACTOR
            else:
                self._spacing = retry_after_s if retry_after_s else MIN_SPACING_S * 4
            self._next_at = max(self._next_at, resume_at)
