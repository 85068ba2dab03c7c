"""One budget's throttle: when its next request may go, how many may be in flight, and how many chains it feeds.

A budget is an endpoint with its own rate limit (the feed; `/api/v1/events` with the key in a header;
with the key as `?api_key=`). Its throttle puts the three ways we keep under a limit behind one
interface: the fixed windows the API announces in `X-RateLimit-*` (RateLimiter), the spacing learned
from 429s where nothing is announced (Pacer), and how many requests may be in flight (AdaptiveConcurrency).
It also learns how long one answer takes, so the scheduler gives the budget the chains it can keep
busy (its rate × its latency) and no more: every extra chain costs a partial page.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator

from ingest.budgets.answer_timeout import AnswerTimer
from ingest.budgets.in_flight import AdaptiveConcurrency
from ingest.budgets.limiter import RateLimiter
from ingest.budgets.pacer import Pacer

# Retry-After is whole seconds and may be rounded down by the server; arriving even a little early
# extends the lockout on the live API, so every 429 pause gets this much on top.
RETRY_AFTER_MARGIN_S = 0.25  # s


class Throttle:
    """The pace of one budget, shared by every chain that draws on it; thread-safe."""

    def __init__(self, name: str, *, limiter: RateLimiter | None = None, pacer: Pacer | None = None,
                 gate: AdaptiveConcurrency | None = None, max_chains: int = 1,
                 answers: AnswerTimer | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.limiter = limiter or RateLimiter(clock=clock)
        self.pacer = pacer  # None: the budget announces its limit (or has none); no spacing to learn
        self.gate = gate  # None: in-flight requests are limited by the chains alone
        self.max_chains = max_chains
        self._clock = clock
        self._lock = threading.Lock()
        self.answers = answers or AnswerTimer()  # the page time, taught by the walkers' full pages
        self.answered = 0  # successful answers
        self.throttled = 0  # 429s

    @contextlib.contextmanager
    def turn(self, stop: threading.Event, give_up: Callable[[], bool] = lambda: False) -> Iterator[bool]:
        """Wait for this budget's next request; yields False without one when `stop` is set meanwhile, or
        `give_up()` turns true (a chain that should hand its partition back rather than wait on).

        The in-flight slot comes first, the window and the spacing last: a chain that waited for a slot
        while another's request got a 429 must still wait out that 429's pause before it sends.
        """
        halt = _Halt(stop, give_up)
        if self.gate is None:
            yield self._paced(halt)
            return
        with self.gate.slot(halt) as admitted:  # type: ignore[arg-type]  # is_set() and wait() are all it asks
            yield admitted and self._paced(halt)

    def _paced(self, halt: _Halt) -> bool:
        self.limiter.acquire(halt)  # type: ignore[arg-type]
        if self.pacer is not None:
            self.pacer.acquire(halt, self._slow_start_spacing_s())  # type: ignore[arg-type]
        # Not asked again: the window's last token, just taken, stalls the budget, yet its request must go.
        return not halt.halted

    def _slow_start_spacing_s(self) -> float:
        """The gap between sends in a slow start (0 otherwise), when no rate is known and the bucket may be
        empty: two requests sent together would both meet it, the second inside the lockout the first one's
        429 opens. Spread over a page-time, as many as the gate allows still go per page-time."""
        if self.gate is None or not self.gate.slow_starting:
            return 0.0
        return self.latency_s / self.gate.limit

    def observe(self, limit: int | None, remaining: int | None, reset: float | None) -> None:
        """X-RateLimit-* of an answer to this budget (call from the thread that sent the request)."""
        self.limiter.observe(limit, remaining, reset)

    def on_success(self) -> None:
        with self._lock:
            self.answered += 1
        if self.gate is not None:
            self.gate.on_success()
        if self.pacer is not None:
            self.pacer.on_success()

    def on_rate_limited(self, retry_after_s: float | None, fallback_s: float) -> float:
        """A 429: every chain of this budget waits the full Retry-After (or `fallback_s`); the wait in s."""
        delay = fallback_s if retry_after_s is None else retry_after_s + RETRY_AFTER_MARGIN_S
        with self._lock:
            self.throttled += 1
        self.limiter.pause_for(delay)
        if self.pacer is not None:
            self.pacer.on_throttled(retry_after_s, self._clock() + delay)
        if self.gate is not None:  # last: a slow start's end opens every slot, and the pause must be set by then
            self.gate.on_throttled()
        return delay

    def wait_s(self) -> float:
        """Seconds until this budget could send (0: now): a 429 pause, a spent window, or the pacer's spacing."""
        pacer_wait = self.pacer.wait_s() if self.pacer is not None else 0.0
        return max(self.limiter.wait_s(), pacer_wait)

    @property
    def latency_s(self) -> float:
        return self.answers.latency_s()

    def rate_per_s(self) -> float | None:
        """Requests per second this budget allows, as far as known (None: no limit seen yet)."""
        announced = self.limiter.rate_per_s()
        if announced is not None:
            return announced
        if self.pacer is not None:
            return self.pacer.rate_per_s()
        return None

    def chains(self) -> int:
        """Chains that keep this budget busy: its rate × one answer's latency, at least 1, at most max_chains.

        A budget that announces its limits: one chain before the first answer (it may announce one),
        `max_chains` when answers announce none. One that never announces (the feed): `max_chains` until
        a 429 shows its rate (its burst is free), and at least the burst the pacer lets go after a window's
        lockout.
        """
        rate = self.rate_per_s()
        if rate is not None:
            # after a window's lockout the pacer lets its burst go at once: as many chains as it holds
            wanted = max(math.ceil(rate * self.latency_s - 1e-9), self.pacer.burst() if self.pacer is not None else 0)
        elif self.pacer is None and not self.answered:
            wanted = 1
        else:
            wanted = self.max_chains
        if self.gate is not None:
            wanted = min(wanted, self.gate.limit)
        return max(1, min(self.max_chains, wanted))

    @property
    def waited_seconds(self) -> float:
        return self.limiter.waited_seconds

    def state(self, wall: Callable[[], float] = time.time) -> tuple[float | None, float | None]:
        """(measured rate per s, not-before as epoch s) to persist; None where there is nothing to keep.

        Not-before covers a 429 pause and a spent window alike: a run started inside either would be
        refused (and, inside a lockout, punished). A rate only guessed from a Retry-After is not kept:
        restored, it would pace the next run at the guess until a 429 measured better.
        """
        rate = self.pacer.measured_rate_per_s() if self.pacer is not None else None
        wait_s = self.limiter.wait_s()
        return rate, (wall() + wait_s if wait_s > 0 else None)

    def restore(self, rate_per_s: float | None, not_before: float | None,
                wall: Callable[[], float] = time.time) -> None:
        """Take up what an earlier run learned: its pace, and no request before its last deadline."""
        if rate_per_s is not None and self.pacer is not None:
            self.pacer.restore(rate_per_s)
            if self.gate is not None:
                self.gate.end_slow_start()  # spaced at that rate, no two requests go together
        if not_before is not None and not_before > wall():
            self.limiter.hold_for(not_before - wall())


class _Halt:
    """What the waits of a turn look at: the run's stop, or the chain's reason to give its partition back.
    Once it has said stop, it keeps saying so (`halted`): a wait that returned on it took no turn."""

    def __init__(self, stop: threading.Event, give_up: Callable[[], bool]) -> None:
        self._stop = stop
        self._give_up = give_up
        self.halted = False

    def is_set(self) -> bool:
        self.halted = self.halted or self._stop.is_set() or self._give_up()
        return self.halted

    def wait(self, timeout: float | None = None) -> bool:
        self._stop.wait(timeout)
        return self.is_set()
