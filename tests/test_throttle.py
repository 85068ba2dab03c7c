"""What a budget's throttle hands to the next run: deadlines (429 pauses and spent windows) and measured rates."""

from __future__ import annotations

import threading

import pytest

from ingest.api.retry_policy import RetryPolicy
from ingest.budgets.answer_timeout import DEFAULT_LATENCY_S
from ingest.budgets.limiter import RateLimiter
from ingest.budgets.pacer import Pacer
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import RETRY_AFTER_MARGIN_S, Throttle
from ingest.errors import RateLimited
from ingest.stats import Stats
from tests.fix_clock import EPOCH_AT_START, START, FakeClock

MARGIN_S = 0.5  # the limiter's Reset margin in these tests


def throttle(clock: FakeClock, *, pacer: Pacer | None = None) -> Throttle:
    limiter = RateLimiter(clock=clock, wall=clock.wall, sleep=clock.sleep, reset_margin=MARGIN_S)
    return Throttle("header", limiter=limiter, pacer=pacer, clock=clock)


def test_a_spent_window_is_a_deadline_for_the_next_run() -> None:
    clock = FakeClock()
    spender = throttle(clock)
    spender.limiter.acquire()
    spender.observe(2, 1, 40)  # 2 per window, 40 s left after the first request
    assert spender.state(wall=clock.wall) == (None, None)  # one request left: nothing to keep
    spender.limiter.acquire()
    _, not_before = spender.state(wall=clock.wall)
    assert not_before == pytest.approx(EPOCH_AT_START + 40 + MARGIN_S, abs=1e-6)

    clock.advance(10.0)  # the run is killed; the next one starts 10 s later
    successor = throttle(clock)
    successor.restore(None, not_before, wall=clock.wall)
    successor.limiter.acquire()
    assert clock.now == pytest.approx(START + 40 + MARGIN_S)  # not a moment into the spent window


def test_a_429_pause_is_a_deadline_for_the_next_run() -> None:
    clock = FakeClock()
    spender = throttle(clock)
    spender.on_rate_limited(30.0, fallback_s=1.0)
    _, not_before = spender.state(wall=clock.wall)
    assert not_before == pytest.approx(EPOCH_AT_START + 30 + RETRY_AFTER_MARGIN_S, abs=1e-6)


def test_a_rate_guessed_from_a_retry_after_is_not_kept_a_measured_one_is() -> None:
    clock = FakeClock()
    feed = throttle(clock, pacer=Pacer(clock=clock, sleep=clock.sleep))
    feed.on_rate_limited(9.0, fallback_s=1.0)  # a first 429 whose Retry-After holds a killed run's debt
    assert feed.pacer is not None and feed.pacer.rate_per_s() is not None
    clock.advance(9.0 + RETRY_AFTER_MARGIN_S)
    assert feed.state(wall=clock.wall) == (None, None)  # a restart starts unpaced, not at that guess
    stop = threading.Event()
    for sent in range(13):  # from the deadline on, 12 requests granted and a 13th refused: an empty bucket again
        with feed.turn(stop) as admitted:
            assert admitted
        if sent < 12:
            feed.on_success()
    feed.on_rate_limited(1.0, fallback_s=1.0)
    rate, _ = feed.state(wall=clock.wall)
    assert rate == pytest.approx(12 / (clock.now - (START + 9.0 + RETRY_AFTER_MARGIN_S)))


def test_a_chain_waiting_for_an_in_flight_slot_waits_out_a_429_that_came_meanwhile() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, wall=clock.wall, sleep=clock.sleep, reset_margin=MARGIN_S)
    feed = Throttle("feed", limiter=limiter, pacer=Pacer(clock=clock, sleep=clock.sleep),
                    slow_start=True, clock=clock)  # one request in flight: a slow start's first step
    stop = threading.Event()
    sent_at: list[float] = []

    in_wait = threading.Event()

    def waiting_for_the_slot() -> bool:
        """Asked first by the slot's wait loop, under the throttle's lock: the chain found the slot taken."""
        in_wait.set()
        return False

    def second_chain() -> None:
        with feed.turn(stop, give_up=waiting_for_the_slot) as admitted:
            assert admitted
            sent_at.append(clock())

    with feed.turn(stop):
        waiting = threading.Thread(target=second_chain)
        waiting.start()
        assert in_wait.wait(10)  # the second chain is waiting for the slot this request holds...
        feed.on_rate_limited(2.0, fallback_s=1.0)  # ...when this request is answered 429
    waiting.join(timeout=10)
    assert sent_at == [pytest.approx(START + 2.0 + RETRY_AFTER_MARGIN_S)]


def test_a_slow_start_spreads_its_requests_over_a_page_time() -> None:
    clock = FakeClock()
    feed = Throttle("feed", limiter=RateLimiter(clock=clock, wall=clock.wall, sleep=clock.sleep),
                    pacer=Pacer(clock=clock, sleep=clock.sleep), slow_start=True, max_chains=8, clock=clock)
    feed.answers.answered(4.0)  # a first full page, after 4 s: two requests may be in flight now
    feed.on_success()
    sent_at = []
    for _ in range(3):
        with feed.turn(threading.Event()):
            sent_at.append(clock() - START)
    assert sent_at == [0.0, 2.0, 4.0]  # never two at once into a bucket that may be empty
    feed.on_rate_limited(1.0, fallback_s=1.0)  # a 429 ends the slow start: the pacer's rate spaces them now
    with feed.turn(threading.Event()):
        sent_at.append(clock() - START)
    assert feed._slow_start_limit is None
    assert sent_at[-1] == pytest.approx(4.0 + 1.0 + RETRY_AFTER_MARGIN_S)  # the 429's pause, not the spacing


class WatchedSlots(threading.Condition):
    """A throttle's slot condition that notes whether the budget's 429 pause was set whenever it woke chains."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__(threading.Lock())
        self.limiter = limiter
        self.paused_when_woken: list[bool] = []

    def notify(self, n: int = 1) -> None:
        self.paused_when_woken.append(self.limiter.wait_s() > 0)
        super().notify(n)

    def notify_all(self) -> None:
        self.paused_when_woken.append(self.limiter.wait_s() > 0)
        super().notify_all()


def test_no_chain_is_let_go_before_a_429s_pause_is_set() -> None:
    """Defect 5 of issue 19: the slot was freed, and a slow start's slots opened, before the pause was set:
    a chain woken in between sent into the lockout."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, wall=clock.wall, sleep=clock.sleep, reset_margin=MARGIN_S)
    feed = Throttle("feed", limiter=limiter, pacer=Pacer(clock=clock, sleep=clock.sleep), slow_start=True,
                    max_chains=4, clock=clock)
    slots = feed._slot_freed = WatchedSlots(limiter)
    retry = RetryLoop(feed, RetryPolicy(), Stats(), threading.Event())
    answers = iter([RateLimited("HTTP 429", status=429, retry_after=2.0), None])

    def send() -> None:
        answer = next(answers)
        if answer is not None:
            raise answer

    retry.call(send, "partition 1")
    assert slots.paused_when_woken[:2] == [True, True]


def test_a_probe_answer_teaches_no_page_time() -> None:
    """Defect 7 of issue 19: the first answer of a budget is the 500-event planning or anchor probe, ~10x
    quicker than a full page; taken whole, it made slow start, the stall threshold and the chain rate short."""
    clock = FakeClock()
    header = throttle(clock)
    retry = RetryLoop(header, RetryPolicy(), Stats(), threading.Event())
    retry.call(lambda: clock.advance(0.3), "the planning probe")
    assert header.latency_s == DEFAULT_LATENCY_S
