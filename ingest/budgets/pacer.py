"""The pace of a budget that publishes no limit but answers 429 (the feed): a rate learned from what is granted.

The feed's reported throttle is a token bucket (~40 requests/min, bursts of ~15) that no header
describes. The pacer starts unpaced (the burst is free). A 429 means the bucket is empty. Between two
429 episodes, both with the bucket empty, the server granted exactly what it generated: the requests
granted in between over the time between *is* its rate, the more exact the longer the span. So the
first 429's Retry-After is only a deadline and a first guess (a rounded time to the next token, which
says little of the rate, and after a restart it includes debt); each later 429 measures the rate over
the span back to the earliest 429 of the last MEASURE_WINDOW_S, and the pacer runs just under it,
probing up slowly (the 429s of requests already in flight are the same episode). A restart takes the
rate and the deadline persisted by the previous run instead of walking into a drained bucket blind.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FIRST_GUESS_SHARE = 0.75  # of 1/Retry-After at the first 429: the time to the next token may be short
RAMP_GROWTH = 1.02  # per grant until a span long enough to measure: +50% in ~20 grants
# Per grant once measured: from UNDERSHOOT the pace passes the rate after ~15 grants and then drains
# what the bucket saved meanwhile, so a 429 (a new, longer measurement) comes every 30-40 grants.
PROBE_GROWTH = 1.002
UNDERSHOOT = 0.97  # run at this share of the measured rate: just under it
MIN_SPAN_S = 8.0  # s; a shorter span between two empty buckets holds too few grants to measure
MEASURE_WINDOW_S = 180.0  # s; older 429s are not used (the server's rate may change; a long lull fills the bucket)
MIN_RATE_PER_S = 0.02  # 1.2 requests/min: slower than any limit reported
MAX_GUESS_S = 10.0  # s; a Retry-After longer than this says debt, not the refill interval
SLEEP_SLICE_S = 0.5  # s; longest single sleep, so a stop request is seen


class Pacer:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate: float | None = None  # requests/s; None: unpaced
        self._ramping = False  # True between the first 429 and the second
        self._next_at = float("-inf")
        self._episode_until = float("-inf")  # 429s answered before this belong to the last episode
        self._granted = 0  # grants so far
        self._episodes: list[tuple[float, int]] = []  # (when a 429 episode began, grants by then)
        self._measured_once = False  # the rate has been measured (not only guessed from a Retry-After)

    def rate_per_s(self) -> float | None:
        """Requests per second the pacer lets through (None while unpaced)."""
        with self._lock:
            return self._rate

    def measured_rate_per_s(self) -> float | None:
        """The rate when it comes from a measurement between two empty buckets (None: unpaced or a guess)."""
        with self._lock:
            return self._rate if self._measured_once else None

    def restore(self, rate_per_s: float) -> None:
        """Start at a rate learned by an earlier run (the bucket may still be drained)."""
        with self._lock:
            self._rate, self._ramping = max(MIN_RATE_PER_S, rate_per_s), False
            self._measured_once = True  # only measured rates are persisted

    def wait_s(self) -> float:
        """Seconds until the next turn (0: now); takes nothing."""
        with self._lock:
            return max(0.0, self._next_at - self._clock())

    def acquire(self, stop: threading.Event | None = None, unpaced_spacing_s: float = 0.0) -> None:
        """Block until this request's turn; returns early (no turn taken) once `stop` is set.

        `unpaced_spacing_s`: the gap to the next turn while no rate is known (none by default: the burst
        is free).
        """
        while stop is None or not stop.is_set():
            with self._lock:
                now = self._clock()
                wait = self._next_at - now
                if wait <= 0:
                    self._next_at = max(now, self._next_at) + (1.0 / self._rate if self._rate else unpaced_spacing_s)
                    return
            self._sleep(min(wait, SLEEP_SLICE_S))

    def on_success(self) -> None:
        with self._lock:
            self._granted += 1
            if self._rate is not None:
                self._rate *= RAMP_GROWTH if self._ramping else PROBE_GROWTH

    def on_throttled(self, retry_after_s: float | None, resume_at: float) -> None:
        """A 429: slow down once per episode; no request starts before `resume_at` (monotonic)."""
        with self._lock:
            now = self._clock()
            # Unpaced, a later turn can only be a slow start's provisional spacing: the 429 replaces it.
            self._next_at = resume_at if self._rate is None else max(self._next_at, resume_at)
            if now < self._episode_until:
                return  # sent before the last slowdown took effect: already answered
            self._episode_until = resume_at
            self._episodes = [e for e in self._episodes if now - e[0] <= MEASURE_WINDOW_S]
            measured = self._measured(now)
            self._episodes.append((now, self._granted))
            if measured is not None:
                self._rate, self._ramping = max(MIN_RATE_PER_S, UNDERSHOOT * measured), False
                self._measured_once = True
            elif self._rate is None:
                guess = min(retry_after_s or 1.0, MAX_GUESS_S)
                self._rate, self._ramping = FIRST_GUESS_SHARE / max(guess, 1e-3), True
            else:  # too soon after the first 429 to measure: step back, stop ramping
                self._rate, self._ramping = max(MIN_RATE_PER_S, self._rate * UNDERSHOOT), False

    def _measured(self, now: float) -> float | None:
        """Grants per second since the earliest 429 of the window (the bucket was empty at both ends)."""
        if not self._episodes or now - self._episodes[0][0] < MIN_SPAN_S:
            return None
        began, granted_then = self._episodes[0]
        return (self._granted - granted_then) / (now - began)
