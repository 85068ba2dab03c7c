from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from ingest import concurrency
from ingest.concurrency import AdaptiveConcurrency


def limits_after(gate: AdaptiveConcurrency, outcomes: str) -> list[int]:
    """Feed outcomes ('s' success, 't' 429) from a thread holding no slot; the limit after each."""
    seen = []
    for outcome in outcomes:
        gate.on_success() if outcome == "s" else gate.on_throttled()
        seen.append(gate.limit)
    return seen


def test_starts_at_maximum_unless_told() -> None:
    assert (AdaptiveConcurrency(6).limit, AdaptiveConcurrency(6, initial=2).limit) == (6, 2)


def test_consecutive_429s_halve_the_limit_down_to_minimum() -> None:
    gate = AdaptiveConcurrency(16, minimum=3, shrink_after=2, grow_after=100)
    assert limits_after(gate, "tttttttt") == [16, 8, 8, 4, 4, 3, 3, 3]


def test_a_success_breaks_a_run_of_429s() -> None:
    gate = AdaptiveConcurrency(8, shrink_after=2, grow_after=100)
    assert limits_after(gate, "tststt") == [8, 8, 8, 8, 8, 4]


def test_consecutive_successes_grow_the_limit_by_one_up_to_maximum() -> None:
    gate = AdaptiveConcurrency(4, initial=2, shrink_after=2, grow_after=3)
    assert limits_after(gate, "sss" "sss" "sss") == [2, 2, 3, 3, 3, 4, 4, 4, 4]


def test_a_429_breaks_a_run_of_successes() -> None:
    gate = AdaptiveConcurrency(4, initial=2, shrink_after=5, grow_after=3)
    assert limits_after(gate, "sstsss") == [2, 2, 2, 2, 2, 3]


def test_429s_for_requests_sent_before_a_halving_do_not_halve_again() -> None:
    gate = AdaptiveConcurrency(16, shrink_after=2, grow_after=100)
    with gate.slot():  # sent at concurrency 16
        limits = limits_after(gate, "tttt")
    with gate.slot():  # sent at concurrency 8: a new episode counts again
        limits += limits_after(gate, "tt")
    assert limits == [16, 8, 8, 8, 8, 4]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"maximum": 0},
        {"maximum": 4, "initial": 5},
        {"maximum": 4, "initial": 1, "minimum": 2},
        {"maximum": 4, "minimum": 0},
        {"maximum": 4, "shrink_after": 0},
        {"maximum": 4, "grow_after": 0},
    ],
)
def test_inconsistent_bounds_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        AdaptiveConcurrency(**kwargs)


def run_threads(
    gate: AdaptiveConcurrency, threads: int, keep_going: Callable[[], str | None]
) -> tuple[list[tuple[str, int]], list[threading.Thread]]:
    """Threads take slots while `keep_going()`; returns (phase before asking, in flight) per entry."""
    lock = threading.Lock()
    in_flight = 0
    entries: list[tuple[str, int]] = []

    def worker() -> None:
        nonlocal in_flight
        while (phase := keep_going()) is not None:
            with gate.slot() as held:
                assert held
                with lock:
                    in_flight += 1
                    entries.append((phase, in_flight))
                time.sleep(0.002)
                with lock:
                    in_flight -= 1

    pool = [threading.Thread(target=worker, name=f"fetch-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    return entries, pool


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def join_all(pool: list[threading.Thread]) -> None:
    for thread in pool:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in pool)


def test_threads_never_exceed_the_limit_in_flight() -> None:
    budget = iter(range(80))
    entries, pool = run_threads(AdaptiveConcurrency(3), 8, lambda: "run" if next(budget, None) is not None else None)
    join_all(pool)
    assert (len(entries), max(flight for _, flight in entries)) == (80, 3)


def test_threads_respect_a_limit_that_shrinks_while_they_run() -> None:
    gate = AdaptiveConcurrency(8, shrink_after=1, grow_after=1000)
    phase = "wide"
    entries, pool = run_threads(gate, 10, lambda: phase)
    wait_for(lambda: any(flight == 8 for _, flight in entries))
    for _ in range(3):
        gate.on_throttled()  # this thread holds no slot, so each 429 counts: 8 → 4 → 2 → 1
    phase = "narrow"  # a slot asked for from now on is granted under limit 1
    wait_for(lambda: sum(p == "narrow" for p, _ in entries) >= 10)
    phase = None
    join_all(pool)
    peaks = {name: max(flight for p, flight in entries if p == name) for name in ("wide", "narrow")}
    assert (gate.limit, peaks) == (1, {"wide": 8, "narrow": 1})


def test_a_set_stop_yields_false_without_a_slot() -> None:
    gate = AdaptiveConcurrency(1)
    stop = threading.Event()
    stop.set()
    with gate.slot(), gate.slot(stop) as held:
        pass
    with gate.slot() as free_again:
        pass
    assert (held, free_again) == (False, True)


def test_stop_ends_a_wait_for_a_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(concurrency, "WAIT_SLICE_S", 0.01)
    gate = AdaptiveConcurrency(1)
    stop = threading.Event()
    results: list[bool] = []

    def waiter() -> None:
        with gate.slot(stop) as held:
            results.append(held)

    with gate.slot():
        thread = threading.Thread(target=waiter, name="waiter")
        thread.start()
        time.sleep(0.02)
        stop.set()
        thread.join(timeout=2)
        assert results == [False]


def test_growth_wakes_a_waiting_thread() -> None:
    gate = AdaptiveConcurrency(2, initial=1, grow_after=1)
    got_slot = threading.Event()

    def waiter() -> None:
        with gate.slot():
            got_slot.set()

    with gate.slot():
        thread = threading.Thread(target=waiter, name="waiter")
        thread.start()
        assert not got_slot.wait(0.02)
        gate.on_success()
        assert got_slot.wait(0.2)
    thread.join(timeout=2)
