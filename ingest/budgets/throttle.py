"""One budget's throttle: when its next request may go, how many may be in flight, and how many chains it feeds.

A budget is an endpoint with its own rate limit (the feed; `/api/v1/events` with the key in a header;
with the key as `?api_key=`). Its throttle puts the three ways we keep under a limit behind one
interface: the fixed windows the API announces in `X-RateLimit-*` (RateLimiter), the spacing learned
from 429s where nothing is announced (Pacer), and a slow start. It also learns how long one answer takes,
so the scheduler gives the budget the chains it can keep busy (its rate × its latency) and no more: every
extra chain costs a partial page.

A slow start is for a feed a run spent moments ago: its bucket may be empty, and requests sent together
into it all land inside the lockout the first one's 429 opens (early retries, penalised on the live API).
One request flies, one more per success, spread over a page time, until the first 429 (or a restored
rate) hands the pace to the pacer. Halving on 429s, as TCP does, would answer the same 429 twice: the
pacer already slows to the bucket's rate, and fewer in flight than rate × page time only leaves tokens unused.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator

from ingest.budgets.answer_timeout import AnswerTimer
from ingest.budgets.limiter import RateLimiter
from ingest.budgets.pacer import Pacer

# Retry-After is whole seconds, and the contract does not say which way it rounds: rounded down, the
# lockout lasts up to a second longer than it says, and arriving even a little early extends it on the
# live API (a full window on some servers). So every 429 pause gets a second on top. On a bucket that
# refills continuously the extra wait costs no token (they are spent at the next probe); on a window,
# under a second per window. (0.25 s let a rounded-down Retry-After of a 1.5 s refill land 0.25 s early.)
RETRY_AFTER_MARGIN_S = 1.0  # s
WAIT_SLICE_S = 0.5  # s; longest wait for an in-flight slot before `stop` is looked at again


class Throttle:
    """The pace of one budget, shared by every chain that draws on it; thread-safe."""

    def __init__(self, name: str, *, limiter: RateLimiter | None = None, pacer: Pacer | None = None,
                 slow_start: bool = False, max_chains: int = 1,
                 answers: AnswerTimer | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.limiter = limiter or RateLimiter(clock=clock)
        self.pacer = pacer  # None: the budget announces its limit (or has none); no spacing to learn
        # Requests allowed in flight during a slow start (None outside one: the chains alone limit them)
        self._slow_start_limit: int | None = 1 if slow_start else None
        # True while the budget may carry one request at a time (the query pool on probation; Budget sets it)
        self.one_at_a_time: Callable[[], bool] = lambda: False
        self._in_flight = 0
        self._holding = threading.local()  # .slot: this thread holds an in-flight slot (its own turn)
        self._slot_freed = threading.Condition(threading.Lock())
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
        admitted = self._enter(halt)
        try:
            yield admitted and self._paced(halt)
        finally:
            if admitted:
                self._holding.slot = False
                with self._slot_freed:
                    self._in_flight -= 1
                    self._slot_freed.notify()

    def _enter(self, halt: _Halt) -> bool:
        """Take an in-flight slot (a slow start may have none free); False when `halt` says stop meanwhile."""
        with self._slot_freed:
            while self._slots_full():
                if halt.is_set():
                    return False
                self._slot_freed.wait(WAIT_SLICE_S)
            self._in_flight += 1
        self._holding.slot = True
        return True

    def _slots_full(self) -> bool:
        cap = 1 if self.one_at_a_time() else self._slow_start_limit
        return cap is not None and self._in_flight >= cap

    @property
    def slow_start_limit(self) -> int | None:
        """Requests that may be in flight during a slow start (None: not in one)."""
        return self._slow_start_limit

    def end_slow_start(self) -> None:
        """A pace is known (a 429 answered, a measured rate restored): the pacer spaces requests from here."""
        with self._slot_freed:
            self._slow_start_limit = None
            self._slot_freed.notify_all()

    def _paced(self, halt: _Halt) -> bool:
        self.limiter.acquire(halt)  # type: ignore[arg-type]
        if self.pacer is not None:
            self.pacer.acquire(halt, self._slow_start_spacing_s())  # type: ignore[arg-type]
        # Not asked again: the window's last token, just taken, stalls the budget, yet its request must go.
        return not halt.halted

    def _slow_start_spacing_s(self) -> float:
        """The gap between sends in a slow start (0 otherwise), when no rate is known and the bucket may be
        empty: two requests sent together would both meet it, the second inside the lockout the first one's
        429 opens. Spread over a page-time, as many as may be in flight still go per page-time."""
        limit = self._slow_start_limit
        return 0.0 if limit is None else self.latency_s / limit

    def observe(self, limit: int | None, remaining: int | None, reset: float | None) -> None:
        """X-RateLimit-* of an answer to this budget (call from the thread that sent the request)."""
        self.limiter.observe(limit, remaining, reset)

    def on_success(self) -> None:
        with self._lock:
            self.answered += 1
        with self._slot_freed:
            if self._slow_start_limit is not None and self._slow_start_limit < self.max_chains:
                self._slow_start_limit += 1
                self._slot_freed.notify()
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
        self.end_slow_start()  # last: it opens every slot, and the pause must be set by then
        return delay

    def wait_s(self) -> float:
        """Seconds until this budget could send (0: now): a 429 pause, a spent window, the pacer's spacing, or
        about a page time while every in-flight slot is taken by others (an answer frees one)."""
        pacer_wait = self.pacer.wait_s() if self.pacer is not None else 0.0
        slot_wait = self.latency_s if self._slots_full() and not getattr(self._holding, "slot", False) else 0.0
        return max(self.limiter.wait_s(), pacer_wait, slot_wait)

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
        limit = self._slow_start_limit
        if limit is not None:
            wanted = min(wanted, limit)
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
            self.end_slow_start()  # spaced at that rate, no two requests go together
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
