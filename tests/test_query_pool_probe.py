"""The query pool's probe: shared or separate from X-RateLimit-Remaining, never fooled by a lost answer or a restart."""

from __future__ import annotations

import pytest

from ingest.budgets.budget import ProbationSource, QueryPoolProbe
from ingest.errors import BudgetRetired
from tests.fix_clock import START, FakeClock

LIMIT = 5


def query(probe: QueryPoolProbe, remaining: int, reset: float, *, sends: int = 1) -> None:
    """`sends` query requests go out (the last one answered with these headers)."""
    for _ in range(sends):
        probe.query_sending()
    probe.query_answered(LIMIT, remaining, reset)


def header(probe: QueryPoolProbe) -> None:
    probe.header_answered(10, 7, 50.0)


def test_a_separate_pool_falls_by_our_requests_alone_while_the_header_pool_answers() -> None:
    probe = QueryPoolProbe()
    query(probe, 4, 59.0)
    header(probe)
    query(probe, 3, 55.0)
    assert probe.verdict == "separate"


def test_a_shared_pool_falls_by_the_header_requests_too() -> None:
    probe = QueryPoolProbe()
    query(probe, 4, 59.0)
    header(probe)
    query(probe, 1, 55.0)  # two header requests reached the same pool meanwhile
    assert probe.verdict == "shared"


def test_the_answer_that_proves_the_pool_shared_tells_the_header_pool_what_is_left() -> None:
    told: list[tuple[int, float]] = []
    clock = FakeClock()
    probe = QueryPoolProbe(on_shared=lambda used, sent_at: told.append((used, sent_at)), clock=clock)
    query(probe, 4, 59.0)
    header(probe)
    assert told == []
    clock.advance(2.0)
    query(probe, 1, 55.0)
    assert told == [(LIMIT - 1, START + 2.0)]  # spent of the shared window, by the query pool's Limit, when sent


def test_a_request_that_timed_out_still_counts_as_ours() -> None:
    probe = QueryPoolProbe()
    query(probe, 4, 59.0)
    header(probe)
    query(probe, 2, 40.0, sends=2)  # the first of the two timed out: no answer, but the pool counted it
    assert probe.verdict == "separate"


def test_a_window_already_short_at_our_first_request_is_shared() -> None:
    probe = QueryPoolProbe()
    query(probe, 2, 30.0)  # our first request, and the window has spent three: others count in it
    assert probe.verdict == "shared"


def test_after_a_restart_the_first_window_proves_nothing_by_its_level() -> None:
    """A run killed a moment ago left its requests in the window: Remaining starts low, which proves nothing."""
    probe = QueryPoolProbe(restarted=True)
    query(probe, 1, 30.0)
    assert probe.verdict is None
    header(probe)
    query(probe, 0, 26.0)
    assert probe.verdict == "separate"  # only falls are compared in that window: ours alone


def test_after_a_restart_a_new_window_is_judged_by_its_level_again() -> None:
    probe = QueryPoolProbe(restarted=True)
    query(probe, 0, 3.0)
    query(probe, 4, 60.0)  # a larger Reset: a new window, where only our request counts
    assert probe.verdict is None
    query(probe, 1, 58.0)  # one more of ours, two others
    assert probe.verdict == "shared"


def test_a_window_reset_shown_as_an_epoch_is_the_same_window_while_it_stays() -> None:
    probe = QueryPoolProbe()
    query(probe, 4, 1_769_541_660.0)
    header(probe)
    query(probe, 3, 1_769_541_660.0)
    assert probe.verdict == "separate"


def test_an_answer_without_rate_limit_headers_sets_no_baseline() -> None:
    probe = QueryPoolProbe()
    probe.query_sending()
    probe.query_answered(None, None, None)
    query(probe, 4, 59.0)
    header(probe)
    query(probe, 3, 55.0)
    assert probe.verdict == "separate"


def test_a_verdict_is_final() -> None:
    probe = QueryPoolProbe()
    query(probe, 4, 59.0)
    header(probe)
    query(probe, 3, 55.0)
    header(probe)
    query(probe, 0, 50.0)
    assert probe.verdict == "separate"


class CountingSource:
    page_size = 5000

    def __init__(self) -> None:
        self.sent = 0

    def page(self, *args: object, **kwargs: object) -> None:
        self.sent += 1


def test_the_query_budget_sends_nothing_once_its_pool_is_shared() -> None:
    probe, inner = QueryPoolProbe(), CountingSource()
    source = ProbationSource(inner, probe)  # type: ignore[arg-type]
    source.page(None, None, None)
    query(probe, 4, 59.0)
    header(probe)
    query(probe, 1, 55.0)
    with pytest.raises(BudgetRetired, match="shares the header pool"):
        source.page(None, None, None)
    assert inner.sent == 1
