"""A family of budgets: each request of a chain goes through the member that can send soonest.

Real throttles and retry loops on a fake clock; `send` records which member carried each request.
"""

from __future__ import annotations

import threading

import pytest

from ingest.api.retry_policy import RetryPolicy
from ingest.budgets.answer_timeout import AnswerTimer
from ingest.budgets.budget import FEED, HEADER, QUERY, Budget, QueryPoolProbe, share_lockouts
from ingest.budgets.family import Family, families_of
from ingest.budgets.limiter import PROBE_MARGIN_S, RateLimiter
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import Throttle
from ingest.errors import BudgetRetired, RateLimited
from ingest.plan.scheduler import hand_back_due
from ingest.stats import Stats
from tests.fix_clock import FakeClock


class NoSource:
    kind, windowed, page_size = "documented", False, 5000  # the requests are the tests' `send`


def member(kind: str, clock: FakeClock, *, family: str = "events", answers: AnswerTimer | None = None) -> Budget:
    throttle = Throttle(kind, limiter=RateLimiter(clock=clock, sleep=clock.sleep), clock=clock, max_chains=8,
                        answers=answers)
    retry = RetryLoop(throttle, RetryPolicy(), Stats(), threading.Event())
    return Budget(kind, kind, source=NoSource(), retry=retry, family=family)  # type: ignore[arg-type]


def pools(clock: FakeClock) -> tuple[Budget, Budget, Family]:
    answers = AnswerTimer()  # one endpoint, one page time (as open_budgets gives them)
    header, query = member(HEADER, clock, answers=answers), member(QUERY, clock, answers=answers)
    return header, query, Family("events", [header, query])


def test_a_spent_window_holds_no_chain_the_next_request_goes_through_the_other_pool() -> None:
    clock = FakeClock()
    header, query, events = pools(clock)
    header.throttle.observe(10, 0, 40.0)  # the header pool's window is spent for 41 s
    carried: list[str] = []
    looks = iter(range(50))  # a chain that leaves its turn and takes it again, without end, fails here

    def hand_back() -> bool:
        return next(looks) < 0

    events.call(lambda m: carried.append(m.name), "partition 1", hand_back=hand_back)
    assert carried == ["query"] and clock.now == 1000.0  # sent at once, nothing handed back
    query.throttle.observe(5, 0, 20.0)  # both spent now: the query pool's window ends first
    events.call(lambda m: carried.append(m.name), "partition 1")
    assert carried == ["query", "query"] and clock.now - 1000.0 == pytest.approx(20 + PROBE_MARGIN_S)  # its probe


def test_on_probation_a_chain_waits_for_the_query_pools_one_request_not_for_a_spent_header_window() -> None:
    clock = FakeClock()
    header, query, events = pools(clock)
    query.probe = QueryPoolProbe()
    header.throttle.observe(10, 0, 29.0)  # spent for 30 s
    carried: list[str] = []
    asked = threading.Event()

    def hand_back() -> bool:  # asked while the chain waits for the query pool's slot
        asked.set()
        return False

    another_chains_request = query.throttle.turn(threading.Event())
    assert another_chains_request.__enter__()  # the query pool's one request on probation is out
    chain = threading.Thread(target=events.call, args=(lambda m: carried.append(m.name), "partition 1"),
                             kwargs={"hand_back": hand_back})
    chain.start()
    assert asked.wait(60)
    assert carried == []  # no second query request while one is out, and no header request into the window
    another_chains_request.__exit__(None, None, None)  # its answer comes
    chain.join(60)
    assert carried == ["query"] and clock.now - 1000.0 < 1.0  # not the 30 s of the header's window


def test_on_probation_the_query_pool_carries_one_request_at_a_time_with_no_way_around() -> None:
    clock = FakeClock()
    header, query, events = pools(clock)
    query.probe = QueryPoolProbe()
    carried: list[str] = []
    looked: list[tuple[bool, float]] = []

    def first(m: Budget) -> None:  # while the query pool carries this request, another chain sends
        carried.append(m.name)
        another_chain = threading.Thread(target=lambda: (
            looked.append((query.send_in_s() > 0, events.send_in_s())),  # its one request is out; the header's free
            events.call(lambda other: carried.append(other.name), "partition 2")))
        another_chain.start()
        another_chain.join(60)

    events.call(lambda m: carried.append(m.name), "partition 1")  # a tie: list order
    events.call(first, "partition 1")  # a tie: the one picked least lately, so the pools answer in turn
    assert carried == ["header", "query", "header"] and looked == [(True, 0.0)]
    query.probe.verdict = "separate"
    events.call(lambda m: carried.append(m.name), "partition 1")
    events.call(lambda m: carried.append(m.name), "partition 1")
    assert carried[-2:] == ["query", "header"]


def test_the_429_that_proves_the_query_pool_shared_locks_the_header_pool_out_too() -> None:
    """Seen at 300k with `?api_key=` sharing the header bucket: the query pool's retry met a 429 whose
    Remaining 0 of 5 proved the pool shared, and the chain sent its next request through the header pool at
    once, into the bucket's lockout (an early arrival 44.8 s before its end)."""
    clock = FakeClock()
    header, query, events = pools(clock)
    query.probe = QueryPoolProbe()
    share_lockouts(query.probe, query.throttle, header.throttle)
    header.throttle.observe(10, 6, 45.0)  # four of the header's ten spent: nothing of its own holds it back
    sent: list[tuple[str, float]] = []

    def send(m: Budget) -> str:
        sent.append((m.name, clock.now - 1000.0))
        if m is query:
            query.probe.query_sending()
            query.probe.query_answered(5, 0, 44.0)  # the 429's headers: shared
            raise RateLimited("429", 429, retry_after=44.0)
        return m.name

    header.throttle.limiter.pause_for(0.5)  # the query pool goes first
    assert events.call(send, "partition 1") == "header"
    assert query.probe.verdict == "shared" and sent[0] == ("query", 0.0)
    assert sent[-1][0] == "header" and sent[-1][1] >= 44.0  # after the lockout, not into it


def test_a_member_failing_for_good_is_retired_and_the_request_goes_through_the_other() -> None:
    clock = FakeClock()
    header, query, events = pools(clock)
    query.probe = QueryPoolProbe()

    def send(m: Budget) -> str:
        if m is query:
            raise BudgetRetired("the ?api_key= pool shares the header pool's limit")
        return m.name

    header.throttle.limiter.pause_for(0.5)  # the query pool goes first
    assert events.call(send, "partition 1") == "header"
    assert query.retired is not None and header.retired is None and events.retired is None
    header.retry.policy = RetryPolicy(max_attempts=1)
    with pytest.raises(BudgetRetired):  # the last member's failure is the family's
        events.call(lambda m: (_ for _ in ()).throw(BudgetRetired("key refused")), "partition 1")


def test_the_family_is_stalled_only_when_every_member_is() -> None:
    """No hand-back between the pools: a spent window with the other pool open keeps the partition."""
    clock = FakeClock()
    header, query, events = pools(clock)
    feed = Family(FEED, [member(FEED, clock, family=FEED)])
    header.throttle.observe(10, 0, 40.0)
    assert events.send_in_s() == 0.0 and not hand_back_due(events, [events, feed])
    query.throttle.observe(5, 0, 30.0)
    # the query pool's window ends first: its probe may go then
    assert events.send_in_s() == pytest.approx(30 + PROBE_MARGIN_S) and hand_back_due(events, [events, feed])


def pools_on_probation(clock: FakeClock, header_left: int, query_left: int) -> tuple[Budget, Budget, Family]:
    """`pools`, their windows announced (10 and 5 per 60 s, that many left) and the query pool on probation."""
    header, query, events = pools(clock)
    query.probe = QueryPoolProbe()
    header.throttle.observe(10, header_left, 59.0)
    query.throttle.observe(5, query_left, 59.0)
    return header, query, events


def test_the_family_keeps_busy_its_members_chains_together() -> None:
    clock = FakeClock()
    header, query, events = pools_on_probation(clock, 10, 5)
    assert events.chains() == 2  # one each: 10 and 5 per 60 s x 3.5 s a page
    for _ in range(3):
        query.throttle.answers.answered(9.0)  # slow pages, taught through either pool: one page time
    query.probe.verdict = "separate"
    assert header.throttle.latency_s == query.throttle.latency_s > 6 and events.chains() == 3  # 2 + 1
    header.retire("key refused")
    assert events.chains() == query.chains() == 1


def test_budgets_are_grouped_by_family_in_order() -> None:
    clock = FakeClock()
    feed, header, query = member(FEED, clock, family=""), member(HEADER, clock), member(QUERY, clock)
    header2 = member(HEADER, clock, family="events#2")
    families = families_of([feed, header, query, header2])
    assert [(f.name, [m.name for m in f.members]) for f in families] == [
        ("feed", ["feed"]), ("events", ["header", "query"]), ("events#2", ["header"])]


def test_the_chain_holding_the_probation_request_does_not_see_its_family_stalled() -> None:
    """Seen in a run with a revoked key: the one member left was on probation; its slot, held by the chain
    itself, made the family look stalled, so the chain handed back and took it again, without end."""
    clock = FakeClock()
    header, query, events = pools(clock)
    query.probe = QueryPoolProbe()
    header.retire("the API rejected the key (HTTP 401)")
    feed = Family(FEED, [member(FEED, clock, family=FEED)])
    looks: list[bool] = []

    def hand_back() -> bool:
        looks.append(hand_back_due(events, [events, feed]))
        if len(looks) > 50:
            raise AssertionError("the chain keeps leaving its turn")
        return looks[-1]

    carried: list[str] = []
    events.call(lambda m: carried.append(m.name), "partition 4", hand_back=hand_back)
    assert carried == ["query"] and not any(looks)


def test_a_pass_ending_before_the_windows_do_gets_the_chains_that_spend_them_first() -> None:
    clock = FakeClock()
    _, query, events = pools_on_probation(clock, 9, 4)
    assert events.chains_to_spend(pass_left_s=300.0) == 2  # 9 and 1 (on probation) requests in 60 s: a chain each
    assert events.chains_to_spend(pass_left_s=12.0) == 3 + 1  # 9 requests of 3.5 s in 12 s; probation's one
    query.probe.verdict = "separate"
    assert events.chains_to_spend(pass_left_s=12.0) == 3 + 2  # and its four
    clock.advance(50.0)
    assert events.chains_to_spend(pass_left_s=300.0) == 4 + 2  # the windows end in 10 s: they come first
    clock.advance(11.0)
    assert events.chains_to_spend(pass_left_s=12.0) == 0  # ended: the next window opens with a request
