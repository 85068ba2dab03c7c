"""When a chain gives its partition back: its family faces a long wait while another family could send.

Each family here has one member (`pool(f)`), so each reads as one decision between families."""

from __future__ import annotations

import threading

import pytest

from ingest.api.retry_policy import RetryPolicy
from ingest.budgets.answer_timeout import DEFAULT_LATENCY_S
from ingest.budgets.budget import FEED, HEADER, QUERY, Budget
from ingest.budgets.family import Family
from ingest.budgets.limiter import RateLimiter
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import Throttle
from ingest.errors import HandedBack, RetryableApiError
from ingest.plan.scheduler import (
    HAND_BACK_PAGE_TIMES,
    hand_back_due,
    next_chain_for,
    share_for,
)
from ingest.stats import Stats

NOW = 1000.0
LONG_WAIT_S = HAND_BACK_PAGE_TIMES * DEFAULT_LATENCY_S + 1  # longer than two page-times
SHORT_WAIT_S = HAND_BACK_PAGE_TIMES * DEFAULT_LATENCY_S - 1


def adopter(families: list[Family]) -> Family | None:
    """Who adopts a partition another family gave up when every family runs the chains it wants."""
    return next_chain_for([(f, 1, 1) for f in families], orphan_waiting=True)


class NoSource:
    kind, windowed, page_size = "documented", False, 5000  # only its throttle is asked


def budget(kind: str) -> Budget:
    throttle = Throttle(kind, clock=lambda: NOW, max_chains=8)
    retry = RetryLoop(throttle, RetryPolicy(), Stats(), threading.Event())
    return Budget(kind, kind, source=NoSource(), retry=retry)  # type: ignore[arg-type]


def family(kind: str) -> Family:
    return Family(kind, [budget(kind)])


def pool(f: Family) -> Budget:
    return f.members[0]


def test_a_budget_locked_out_for_longer_than_two_page_times_hands_back_while_another_can_send() -> None:
    feed, header, query = family(FEED), family(HEADER), family(QUERY)
    pool(header).throttle.limiter.pause_for(LONG_WAIT_S)
    assert [hand_back_due(b, [feed, header, query]) for b in (feed, header, query)] == [False, True, False]


def test_a_short_wait_is_no_reason_to_hand_back() -> None:
    feed, header = family(FEED), family(HEADER)
    pool(header).throttle.limiter.pause_for(SHORT_WAIT_S)
    assert not hand_back_due(header, [feed, header])


def test_nobody_hands_back_when_every_budget_waits() -> None:
    feed, header = family(FEED), family(HEADER)
    pool(feed).throttle.limiter.pause_for(LONG_WAIT_S)
    pool(header).throttle.limiter.pause_for(LONG_WAIT_S)
    assert not hand_back_due(header, [feed, header]) and not hand_back_due(feed, [feed, header])


def test_a_retired_budget_takes_nothing_so_nothing_is_handed_to_it() -> None:
    feed, header = family(FEED), family(HEADER)
    pool(header).throttle.limiter.pause_for(LONG_WAIT_S)
    feed.retire("stream-access refused")
    assert not hand_back_due(header, [feed, header])


def test_a_spent_window_counts_as_a_wait() -> None:
    header, feed = family(HEADER), family(FEED)
    pool(header).throttle.observe(10, 0, 40.0)  # the window's last request is spent; 40 s to its end
    assert hand_back_due(header, [header, feed])


def test_a_request_that_failed_in_a_spent_window_hands_back_instead_of_waiting_for_the_next() -> None:
    header, feed = family(HEADER), family(FEED)
    sent: list[int] = []

    def cut_body() -> None:
        sent.append(1)
        pool(header).throttle.observe(10, 0, 40.0)  # the failed request was the window's last
        raise RetryableApiError("invalid or truncated JSON body")

    with pytest.raises(HandedBack):
        pool(header).retry.call(cut_body, "partition 2", hand_back=lambda: hand_back_due(header, [header, feed]))
    assert sent == [1]


def test_the_budget_running_fewest_chains_starts_the_next() -> None:
    feed, header, query = family(FEED), family(HEADER), family(QUERY)
    assert next_chain_for([(feed, 2, 8), (header, 1, 1), (query, 0, 1)]) is query
    assert next_chain_for([(feed, 2, 8), (header, 1, 1), (query, 1, 1)]) is feed
    assert next_chain_for([(feed, 0, 8), (header, 0, 1)]) is feed  # a tie: list order


def test_each_family_wants_its_own_chains_whatever_the_feed_runs() -> None:
    """The feed started eight partitions before its first 429 showed it keeps three chains busy (or, before
    it, wants all eight): the pools' windows (20 s ones keep three busy) must not wait behind them. Seen at
    300k with 20 s windows: the pools ran one chain while the feed burned its burst."""
    feed, events = family(FEED), family(HEADER)
    assert next_chain_for([(feed, 8, 3), (events, 1, 3)]) is events
    assert next_chain_for([(feed, 8, 8), (events, 1, 3)]) is events
    assert next_chain_for([(feed, 8, 8), (events, 3, 3)]) is None


def test_a_partition_given_up_goes_to_the_budget_that_can_send_soonest() -> None:
    feed, header, query = family(FEED), family(HEADER), family(QUERY)
    pool(header).throttle.observe(10, 0, 40.0)  # it gave the partition back: its window is spent
    pool(feed).throttle.limiter.pause_for(SHORT_WAIT_S)
    assert adopter([feed, header, query]) is query
    pool(query).throttle.limiter.pause_for(SHORT_WAIT_S + 0.5)
    assert adopter([feed, header, query]) is feed


def test_no_budget_adopts_a_partition_when_each_faces_a_long_wait_or_is_retired() -> None:
    feed, header, query = family(FEED), family(HEADER), family(QUERY)
    pool(header).throttle.observe(10, 0, 40.0)
    pool(query).throttle.limiter.pause_for(LONG_WAIT_S)
    feed.retire("stream-access refused")
    assert adopter([feed, header, query]) is None


def test_a_partition_given_up_is_adopted_below_the_adopters_cap_only() -> None:
    feed, header = family(FEED), family(HEADER)
    pool(header).throttle.observe(10, 0, 40.0)  # it gave the partition back: its window is spent
    wanted = [(feed, 3, 3), (header, 0, 0)]  # every budget runs the chains it wants
    assert next_chain_for(wanted) is None
    assert next_chain_for(wanted, orphan_waiting=True) is feed
    # at its own cap a chain more would find no thread: its partition would wait unwalked
    assert next_chain_for([(feed, 8, 8), (header, 0, 0)], orphan_waiting=True) is None


def test_a_thief_whose_window_opens_later_takes_less_and_nothing_when_the_owner_would_end_first() -> None:
    feed, header = family(FEED), family(HEADER)  # one chain each, a page per page-time
    assert share_for(header, feed, pages_left=10) == 0.5
    pool(header).throttle.limiter.pause_for(2 * DEFAULT_LATENCY_S)  # the owner walks 2 pages meanwhile
    assert share_for(header, feed, pages_left=10) == pytest.approx(0.4)  # 4 pages each way: they end together
    assert share_for(header, feed, pages_left=5) == pytest.approx(0.3)  # 1.5 pages: the owner keeps whole pages
    assert share_for(header, feed, pages_left=3) == 0.0  # its 1 page would end with the owner's 3: no gain
    pool(header).throttle.limiter.pause_for(0.5 * DEFAULT_LATENCY_S)  # never shortened: still 2 page times
    assert share_for(header, feed, pages_left=3.5) == pytest.approx(1 / 3.5)  # 1 page, done before the owner's 3.5


def test_a_thief_ready_soon_takes_one_page_of_the_last_two_rather_than_leave_them_to_one_chain() -> None:
    """Seen at 300k: a feed chain walked a partition's last two pages one after the other while the feed had
    tokens and no other work; the run ended a page time later than two chains would have."""
    feed, other = family(FEED), family(FEED)
    pool(feed).throttle.limiter.pause_for(0.4 * DEFAULT_LATENCY_S)  # the thief's pacer: it sends soon
    assert share_for(feed, other, pages_left=2) == pytest.approx(0.5)  # 1 page each: 1.4 page times, not 2


def test_the_chains_of_a_retired_budget_hand_their_partitions_back() -> None:
    """Defect 8 of issue 19: one chain's RetriesExhausted retired the budget; its other chains kept walking."""
    feed, header = family(FEED), family(HEADER)
    feed.retire("partition 3: gave up after 8 attempts")
    assert hand_back_due(feed, [feed, header])


def test_a_chain_already_waiting_in_its_turn_when_the_window_is_spent_hands_back() -> None:
    """Defect 4 of issue 19: hand-back was asked only before the turn, so a chain waiting inside it sat out the
    whole window (here 41 s) holding its partition."""
    clock = [NOW]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    limiter = RateLimiter(clock=lambda: clock[0], sleep=sleep)
    header = Family(HEADER, [Budget(HEADER, HEADER, source=NoSource(), retry=RetryLoop(  # type: ignore[arg-type]
        Throttle(HEADER, limiter=limiter, clock=lambda: clock[0]), RetryPolicy(), Stats(), threading.Event()))])
    feed = family(FEED)
    pool(header).throttle.observe(10, 0, 40.0)  # another chain took the window's last request
    asked: list[bool] = []

    def hand_back() -> bool:  # the first look was before the window was spent
        asked.append(bool(asked) and hand_back_due(header, [header, feed]))
        return asked[-1]

    sent: list[float] = []
    with pytest.raises(HandedBack):
        pool(header).retry.call(lambda: sent.append(clock[0]), "partition 2", hand_back=hand_back)
    assert sent == [] and clock[0] - NOW < 1.0


def test_the_request_that_takes_a_windows_last_token_is_sent() -> None:
    """Taking the last token stalls the budget until the window ends: that request must still go, or the
    window's last request is lost to a hand-back."""
    header, feed = family(HEADER), family(FEED)
    pool(header).throttle.observe(10, 1, 40.0)  # one request left in the window
    sent: list[int] = []
    pool(header).retry.call(lambda: sent.append(1), "partition 2",
                            hand_back=lambda: hand_back_due(header, [header, feed]))
    assert sent == [1]
