"""The pace of a budget that publishes no limit but answers 429 (the feed): a rate found from what is granted,
probed upward, with a burst after a window's lockout (docs/scheduling.md, "The pacer")."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

RAMP_GROWTH = 1.05  # per grant until the first measurement: a guess from a Retry-After may be far under (x2 in 15)
# Per grant once measured: x1.22 in 20 grants, so a pace measured low is back within ~30 s; past the rate a
# bucket's spare (under ~2 tokens at a deadline) drains in ~12 grants: a 429 every ~15-20 s at 40/min.
PROBE_GROWTH = 1.01
MEASURE_WINDOW_S = 180.0  # s; older 429s are not used (the server's rate may change; a long lull fills the bucket)
MIN_GUESS_SPAN_S = 1.0  # s; sends over a shorter time before the first 429 say nothing of a pace
MIN_RATE_PER_S = 0.02  # 1.2 requests/min: slower than any limit reported
MAX_GUESS_S = 10.0  # s; a Retry-After longer than this says debt or a window, not the refill interval
BURST_SPACING_S = 0.25  # s; a 429 answers in less, so a burst's first refusal pauses the rest before they go
SLEEP_SLICE_S = 0.5  # s; longest single sleep, so a stop request is seen


class Pacer:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate: float | None = None  # requests/s; None: unpaced
        self._measured: float | None = None  # the last bound measured between two empty buckets (or restored)
        self._next_at = float("-inf")
        self._episode_until = float("-inf")  # 429s answered before this belong to the last episode
        self._sent: deque[float] = deque()  # when each request of the window went
        self._refused: deque[float] = deque()  # when each 429 of the window came
        self._resumes: deque[float] = deque()  # the deadline of each 429 episode of the window
        self._burst = 0  # requests that go BURST_SPACING_S apart from the next turn on (after a long lockout)

    def rate_per_s(self) -> float | None:
        """Requests per second the pacer lets through (None while unpaced)."""
        with self._lock:
            return self._rate

    def measured_rate_per_s(self) -> float | None:
        """The rate measured between two empty buckets (or restored); None before a measurement."""
        with self._lock:
            return self._measured

    def restore(self, rate_per_s: float) -> None:
        """Start at a rate measured by an earlier run (the bucket may still be drained)."""
        with self._lock:
            self._rate = self._measured = max(MIN_RATE_PER_S, rate_per_s)

    def burst(self) -> int:
        """Requests let through BURST_SPACING_S apart before the pace applies again (0: none)."""
        with self._lock:
            return self._burst

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
                    self._burst = max(0, self._burst - 1)
                    pace = 1.0 / self._rate if self._rate else unpaced_spacing_s
                    self._next_at = max(now, self._next_at) + (BURST_SPACING_S if self._burst else pace)
                    self._forget(now - MEASURE_WINDOW_S)
                    self._sent.append(now)
                    return
            self._sleep(min(wait, SLEEP_SLICE_S))

    def on_success(self) -> None:
        with self._lock:
            if self._rate is not None:
                self._rate *= PROBE_GROWTH if self._measured is not None else RAMP_GROWTH

    def on_throttled(self, retry_after_s: float | None, resume_at: float) -> None:
        """A 429: re-measure once per episode; no request starts before `resume_at` (monotonic)."""
        with self._lock:
            now = self._clock()
            self._refused.append(now)
            # Unpaced, a later turn can only be a slow start's provisional spacing: the 429 replaces it.
            self._next_at = resume_at if self._rate is None else max(self._next_at, resume_at)
            if now < self._episode_until:
                return  # sent before the last deadline was known: already answered
            self._episode_until = resume_at
            self._forget(now - MEASURE_WINDOW_S)
            bound = None if self._burst else self._bound(now)
            # granted since the latest deadline of the window (since the first send without one)
            granted = self._granted_since(next((t for t in reversed(self._resumes) if t < now), float("-inf")))
            self._resumes.append(resume_at)
            if bound is None:  # the first 429 of the window or a burst's: keep the pace requests went at
                self._rate = self._rate if self._rate is not None else self._sending_rate(now, retry_after_s)
            elif bound > 0:  # (none granted since the deadline: a request we did not send took it; keep the pace)
                self._rate = self._measured = max(MIN_RATE_PER_S, bound)
            self._burst = granted if retry_after_s is not None and retry_after_s > MAX_GUESS_S else 0

    def _forget(self, before: float) -> None:
        for times in (self._sent, self._refused, self._resumes):
            while times and times[0] < before:
                times.popleft()

    def _bound(self, now: float) -> float | None:
        """Requests granted per second from the earliest deadline of the window to now (None: no such deadline)."""
        began = next((t for t in self._resumes if t < now), None)
        return None if began is None else self._granted_since(began) / (now - began)

    def _granted_since(self, began: float) -> int:
        """Requests sent since `began` less those refused."""
        return max(0, sum(1 for t in self._sent if t >= began) - sum(1 for t in self._refused if t >= began))

    def _sending_rate(self, now: float, retry_after_s: float | None) -> float:
        """The pace the requests went at before the first 429, or a guess from its Retry-After."""
        if self._sent and now - self._sent[0] >= MIN_GUESS_SPAN_S:
            granted = len(self._sent) - len(self._refused)
            if granted > 0:
                return max(MIN_RATE_PER_S, granted / (now - self._sent[0]))
        return 1.0 / min(max(retry_after_s or 1.0, 1e-3), MAX_GUESS_S)
