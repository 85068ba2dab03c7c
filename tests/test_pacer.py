"""The feed's pacer on a fake clock: unpaced until a 429, a rate learned from grants, once per episode."""

import threading

import pytest

from ingest.budgets.pacer import FIRST_GUESS_SHARE, MAX_GUESS_S, PROBE_GROWTH, RAMP_GROWTH, UNDERSHOOT, Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def starts(pacer: Pacer, clock: FakeClock, count: int) -> list[float]:
    out = []
    for _ in range(count):
        pacer.acquire()
        out.append(round(clock.now - 100.0, 3))
    return out


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_unpaced_until_the_first_429(clock: FakeClock) -> None:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    assert starts(pacer, clock, 5) == [0, 0, 0, 0, 0]
    assert pacer.rate_per_s() is None


def test_the_first_429_waits_its_deadline_then_paces_at_its_guess(clock: FakeClock) -> None:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.on_throttled(2.0, resume_at=clock.now + 2.0)
    spacing = 2.0 / FIRST_GUESS_SHARE
    assert starts(pacer, clock, 3) == [2.0, round(2.0 + spacing, 3), round(2.0 + 2 * spacing, 3)]


def test_grants_between_429s_measure_the_servers_rate_over_the_longest_span(clock: FakeClock) -> None:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.on_throttled(2.0, resume_at=clock.now)
    for _ in range(10):
        pacer.on_success()
    assert pacer.rate_per_s() == pytest.approx(0.5 * FIRST_GUESS_SHARE * RAMP_GROWTH ** 10)  # ramping
    clock.now += 16.0  # the bucket was empty at both 429s: it granted 10 requests in 16 s
    pacer.on_throttled(1.0, resume_at=clock.now + 1.0)
    assert pacer.rate_per_s() == pytest.approx(UNDERSHOOT * 10 / 16)
    pacer.on_success()
    assert pacer.rate_per_s() == pytest.approx(UNDERSHOOT * 10 / 16 * PROBE_GROWTH)
    for _ in range(13):
        pacer.on_success()
    clock.now += 20.0  # the span now reaches back to the first 429: 24 grants in 36 s
    pacer.on_throttled(1.0, resume_at=clock.now + 1.0)
    assert pacer.rate_per_s() == pytest.approx(UNDERSHOOT * 24 / 36)


def test_429s_of_one_episode_slow_down_once(clock: FakeClock) -> None:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.restore(1.0)
    pacer.on_throttled(2.0, resume_at=clock.now + 2.0)
    clock.now += 0.5  # answers to requests already in flight when the first 429 came
    pacer.on_throttled(2.0, resume_at=clock.now + 2.0)
    pacer.on_throttled(2.0, resume_at=clock.now + 2.0)
    assert pacer.rate_per_s() == pytest.approx(UNDERSHOOT)  # too soon to measure: one step back


def test_a_retry_after_with_debt_is_not_taken_for_the_rate(clock: FakeClock) -> None:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.on_throttled(40.0, resume_at=clock.now + 40.0)
    assert pacer.rate_per_s() == pytest.approx(FIRST_GUESS_SHARE / MAX_GUESS_S)
    assert starts(pacer, clock, 2) == [40.0, round(40.0 + MAX_GUESS_S / FIRST_GUESS_SHARE, 3)]


def test_a_restored_rate_paces_from_the_first_request(clock: FakeClock) -> None:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.restore(0.5)
    assert starts(pacer, clock, 3) == [0.0, 2.0, 4.0]


def test_stop_ends_the_wait_without_a_turn(clock: FakeClock) -> None:
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.on_throttled(5.0, resume_at=clock.now + 1000)
    stop = threading.Event()
    stop.set()
    pacer.acquire(stop)
    assert clock.now == 100.0
