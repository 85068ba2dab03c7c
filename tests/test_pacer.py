import threading

from ingest.pacer import SLOWDOWN_FACTOR, SPEEDUP_AFTER, SPEEDUP_FACTOR, Pacer


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


def test_unpaced_until_the_first_429() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    assert starts(pacer, clock, 5) == [0, 0, 0, 0, 0]


def test_a_429_spaces_requests_by_retry_after_from_the_resume_instant() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.on_throttled(2.0, resume_at=clock.now + 2.0)
    assert starts(pacer, clock, 3) == [2.0, 4.0, 6.0]


def test_success_runs_shorten_and_429s_lengthen_the_spacing() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.on_throttled(2.0, resume_at=clock.now)
    for _ in range(SPEEDUP_AFTER):
        pacer.on_success()
    assert round(pacer.spacing_s, 6) == round(2.0 * SPEEDUP_FACTOR, 6)
    pacer.on_throttled(1.0, resume_at=clock.now)
    assert round(pacer.spacing_s, 6) == round(2.0 * SPEEDUP_FACTOR * SLOWDOWN_FACTOR, 6)


def test_stop_ends_the_wait_without_a_turn() -> None:
    clock = FakeClock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    pacer.on_throttled(5.0, resume_at=clock.now + 1000)
    stop = threading.Event()
    stop.set()
    pacer.acquire(stop)
    assert clock.now == 100.0
