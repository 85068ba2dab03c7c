"""A feed's slow start (Throttle): one request in flight, one more per success, until a pace is known."""

from __future__ import annotations

import threading

import pytest

from ingest.budgets import throttle as throttle_module
from ingest.budgets.throttle import Throttle

GUARD_S = 60  # s; only turns a hang into a failure, never the condition a test waits for


def slow_start(max_chains: int = 8) -> Throttle:
    return Throttle("feed", slow_start=True, max_chains=max_chains)  # no pacer: no spacing, only the slots


class StopAsked(threading.Event):
    """A stop event that says when a thread waiting for a slot first looked at it: it does so only with
    every slot taken, under the throttle's lock, just before it waits; anything needing that lock (a
    success, a slot freed) reaches it only after it waits."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()

    def is_set(self) -> bool:
        self.asked.set()
        return super().is_set()


def test_a_slow_start_adds_a_slot_per_success_until_the_first_429_then_leaves_the_pace_to_the_pacer() -> None:
    feed = slow_start(max_chains=4)
    limits = [feed._slow_start_limit]
    for outcome in "ssss" "t" "s":
        feed.on_success() if outcome == "s" else feed.on_rate_limited(1.0, fallback_s=1.0)
        limits.append(feed._slow_start_limit)
    assert limits == [1, 2, 3, 4, 4, None, None]


def test_a_restored_measured_rate_ends_a_slow_start() -> None:
    from ingest.budgets.pacer import Pacer

    feed = Throttle("feed", pacer=Pacer(), slow_start=True, max_chains=8)
    feed.restore(0.6, None)
    assert feed._slow_start_limit is None and feed.chains() > 1  # the pacer's 0.6/s keeps requests apart


def test_outside_a_slow_start_every_chain_may_send_at_once() -> None:
    header = Throttle("header", max_chains=8)
    stop = threading.Event()
    with header.turn(stop) as first, header.turn(stop) as second, header.turn(stop) as third:
        assert (first, second, third) == (True, True, True)


def test_threads_never_exceed_the_slots_of_a_slow_start() -> None:
    feed = slow_start()
    feed.on_success()
    feed.on_success()  # three in flight at most now
    lock, in_flight, most, turns = threading.Lock(), 0, 0, iter(range(60))
    stop = threading.Event()

    def chain() -> None:
        nonlocal in_flight, most
        while next(turns, None) is not None:
            with feed.turn(stop) as admitted:
                assert admitted
                with lock:
                    in_flight += 1
                    most = max(most, in_flight)
                threading.Event().wait(0.001)  # the request's flight: others ask meanwhile
                with lock:
                    in_flight -= 1

    pool = [threading.Thread(target=chain) for _ in range(8)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(GUARD_S)
    assert most == 3


def test_stop_ends_a_wait_for_a_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle_module, "WAIT_SLICE_S", 0.01)  # how soon the waiter looks at `stop` again
    feed = slow_start()
    stop = StopAsked()
    results: list[bool] = []

    def waiter() -> None:
        with feed.turn(stop) as admitted:
            results.append(admitted)

    with feed.turn(threading.Event()):
        thread = threading.Thread(target=waiter)
        thread.start()
        assert stop.asked.wait(GUARD_S)  # it waits for the slot this thread holds
        stop.set()
        thread.join(GUARD_S)
        assert results == [False]
    with feed.turn(threading.Event()) as free_again:  # the refused wait took no slot
        assert free_again


def test_a_success_wakes_a_chain_waiting_for_a_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    # The waiter would look again only after an hour: only the success's notify can wake it in time.
    monkeypatch.setattr(throttle_module, "WAIT_SLICE_S", 3600)
    feed = slow_start()
    asking = StopAsked()
    got_slot = threading.Event()

    def waiter() -> None:
        with feed.turn(asking):
            got_slot.set()

    with feed.turn(threading.Event()):
        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        assert asking.asked.wait(GUARD_S)  # blocked: one slot, held here
        assert not got_slot.is_set()
        feed.on_success()  # two slots
        assert got_slot.wait(GUARD_S)
    thread.join(GUARD_S)
