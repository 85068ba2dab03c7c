from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from ingest.budgets import in_flight as concurrency
from ingest.budgets.in_flight import AdaptiveConcurrency


def limits_after(gate: AdaptiveConcurrency, outcomes: str) -> list[int]:
    """Feed outcomes ('s' success, 't' 429) from a thread holding no slot; the limit after each."""
    seen = []
    for outcome in outcomes:
        gate.on_success() if outcome == "s" else gate.on_throttled()
        seen.append(gate.limit)
    return seen


def test_every_chain_may_send_at_once_outside_a_slow_start() -> None:
    gate = AdaptiveConcurrency(8)
    assert limits_after(gate, "ttss") == [8, 8, 8, 8]  # the pacer answers 429s; no second answer here


def test_a_slow_start_adds_a_slot_per_success_until_the_first_429_then_leaves_the_pace_to_the_pacer() -> None:
    gate = AdaptiveConcurrency(8, slow_start=True)
    assert gate.limit == 1
    assert limits_after(gate, "sss" "t" "s" "tt") == [2, 3, 4, 8, 8, 8, 8]
    assert not gate.slow_starting


def test_a_restored_pace_ends_a_slow_start() -> None:
    gate = AdaptiveConcurrency(8, slow_start=True)
    gate.end_slow_start()
    assert (gate.limit, gate.slow_starting) == (8, False)


def test_no_slot_at_all_is_refused() -> None:
    with pytest.raises(ValueError):
        AdaptiveConcurrency(0)


class StopAsked(threading.Event):
    """A stop event that says when a thread waiting for a slot first looked at it.

    `slot` looks at `stop` only while every slot is taken, holding the gate's lock, just before it waits
    on the gate: once `asked` is set, the waiter is blocked, and anything that needs the gate's lock (a
    success, a release) reaches it only after it waits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()

    def is_set(self) -> bool:
        self.asked.set()
        return super().is_set()


GUARD_S = 60  # s; only turns a hang into a failure, never the condition a test waits for


def run_threads(gate: AdaptiveConcurrency, threads: int, keep_going: Callable[[], str | None],
                meet: threading.Barrier | None = None, release: threading.Event | None = None,
                ) -> tuple[list[tuple[str, int]], list[threading.Thread]]:
    """Threads take slots while `keep_going()`; returns (phase before asking, in flight) per entry.

    With `meet`, the first `meet.parties - 1` entries hold their slots until they and the test's thread
    meet there, then until `release` is set: the test knows exactly what is in flight when it acts.
    """
    lock = threading.Lock()
    in_flight = 0
    entries: list[tuple[str, int]] = []
    holders = meet.parties - 1 if meet is not None else 0

    def worker() -> None:
        nonlocal in_flight
        while (phase := keep_going()) is not None:
            with gate.slot() as held:
                assert held
                with lock:
                    in_flight += 1
                    entries.append((phase, in_flight))
                    holds = len(entries) <= holders
                if holds:
                    meet.wait(GUARD_S)
                    release.wait(GUARD_S)
                with lock:
                    in_flight -= 1

    pool = [threading.Thread(target=worker, name=f"fetch-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    return entries, pool


def join_all(pool: list[threading.Thread]) -> None:
    for thread in pool:
        thread.join(timeout=GUARD_S)
    assert not any(thread.is_alive() for thread in pool)


def test_threads_never_exceed_the_limit_in_flight() -> None:
    gate = AdaptiveConcurrency(3)
    budget = iter(range(80))
    meet, release = threading.Barrier(3 + 1), threading.Event()
    entries, pool = run_threads(gate, 8, lambda: "run" if next(budget, None) is not None else None, meet, release)
    meet.wait(GUARD_S)  # three threads hold a slot each; the five others ask for one
    stop = threading.Event()
    stop.set()
    with gate.slot(stop) as fourth:
        pass
    release.set()
    join_all(pool)
    assert (fourth, len(entries), max(flight for _, flight in entries)) == (False, 80, 3)


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
    monkeypatch.setattr(concurrency, "WAIT_SLICE_S", 0.01)  # how soon the waiter looks at `stop` again
    gate = AdaptiveConcurrency(1)
    stop = StopAsked()
    results: list[bool] = []

    def waiter() -> None:
        with gate.slot(stop) as held:
            results.append(held)

    with gate.slot():
        thread = threading.Thread(target=waiter, name="waiter")
        thread.start()
        assert stop.asked.wait(GUARD_S)  # it waits for the slot this thread holds
        stop.set()
        join_all([thread])
        assert results == [False]


def test_growth_wakes_a_waiting_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # The waiter would look again only after an hour: only the growth's notify can wake it in time.
    monkeypatch.setattr(concurrency, "WAIT_SLICE_S", 3600)
    gate = AdaptiveConcurrency(2, slow_start=True)  # one slot until a success
    asking = StopAsked()
    got_slot = threading.Event()

    def waiter() -> None:
        with gate.slot(asking):
            got_slot.set()

    with gate.slot():
        thread = threading.Thread(target=waiter, name="waiter", daemon=True)
        thread.start()
        assert asking.asked.wait(GUARD_S)  # blocked on the gate: limit 1, held here
        assert not got_slot.is_set()
        gate.on_success()  # limit 2
        assert got_slot.wait(GUARD_S)
    join_all([thread])
