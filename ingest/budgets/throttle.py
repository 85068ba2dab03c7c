"""One budget's throttle: the windows (RateLimiter), the spacing (Pacer) and the in-flight slots behind one turn,
and how many chains the budget feeds (docs/scheduling.md, "A request's turn")."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator

from ingest.budgets.answer_timeout import AnswerTimer
from ingest.budgets.limiter import RateLimiter
from ingest.budgets.pacer import Pacer

# Retry-After is whole seconds, rounded either way (the contract does not say): rounded down, the lockout
# outlasts it by up to a second, and an early retry extends it. A continuous bucket loses no token by it.
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
        self._slow_start_limit: int | None = 1 if slow_start else None  # in flight (None: not in a slow start)
        self.one_at_a_time: Callable[[], bool] = lambda: False  # the query pool on probation (Budget sets it)
        # told of every 429 (Retry-After, the body's bucket size, the pause's end): the feed's `FeedShareWatch`
        self.on_refused: Callable[[float | None, int | None, float], None] = lambda retry_after, limit, until: None
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
        """Wait for this budget's next request: the in-flight slot first (a chain that waited for it still
        waits out a 429 answered meanwhile), then the window and the spacing. Yields False without a turn
        once `stop` is set or `give_up()` turns true."""
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
        """Take an in-flight slot; False when `halt` says stop meanwhile."""
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

    def end_slow_start(self) -> None:
        """A pace is known (a 429, a restored rate): the pacer spaces requests from here."""
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
        """The gap between a slow start's sends (0 outside one): its slots spread over a page time, so two
        requests never meet a drained bucket together."""
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

    def on_rate_limited(self, retry_after_s: float | None, fallback_s: float, limit: int | None = None) -> float:
        """A 429 (of a bucket of `limit` where its body says): every chain of this budget waits the full
        Retry-After (or `fallback_s`); the wait in s."""
        delay = fallback_s if retry_after_s is None else retry_after_s + RETRY_AFTER_MARGIN_S
        with self._lock:
            self.throttled += 1
        self.limiter.pause_for(delay)
        if self.pacer is not None:
            self.pacer.on_throttled(retry_after_s, self._clock() + delay)
        self.on_refused(retry_after_s, limit, self._clock() + delay)
        self.end_slow_start()  # last: it opens every slot, and the pause must be set by then
        return delay

    def hold_until(self, until: float) -> None:
        """No request before `until` (this throttle's clock): another budget's lockout on the same bucket."""
        self.limiter.hold_for(until - self._clock())

    def wait_s(self) -> float:
        """Seconds until this budget could send (0: now): a 429 pause, a spent window, the spacing, or a page
        time while others hold every in-flight slot."""
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
        """Chains that keep this budget busy: its rate × the page time rounded up, or the pacer's burst; with
        no rate known, 1 before an announcing budget's first answer, else max_chains."""
        rate = self.rate_per_s()
        if rate is not None:
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
        Not-before covers a 429 pause and a spent window alike; a rate only guessed is not kept."""
        rate = self.pacer.measured_rate_per_s() if self.pacer is not None else None
        wait_s = self.limiter.wait_s(probe=False)  # the next run knows nothing of the server's rounding
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
    """The run's stop or the chain's reason to give up; once it said stop it keeps saying so (`halted`)."""

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
