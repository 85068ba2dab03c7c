"""How long a chain waits for a page: learned from the budget's full-page answers, longer after timeouts."""

from __future__ import annotations

from ingest.budgets.answer_timeout import LEARNED_AFTER, MIN_WAIT_S, SLOWEST_FACTOR, AnswerTimer

CONFIGURED_S = 15.0


def test_the_configured_wait_holds_until_enough_answers_are_known() -> None:
    timer = AnswerTimer(CONFIGURED_S)
    waits = []
    for _ in range(LEARNED_AFTER):
        waits.append(timer.timeout_s())
        timer.answered(3.5)
    assert waits == [CONFIGURED_S] * LEARNED_AFTER
    assert timer.timeout_s() == SLOWEST_FACTOR * 3.5


def test_the_slowest_recent_answer_sets_the_wait_within_its_floor_and_the_configured_ceiling() -> None:
    timer = AnswerTimer(CONFIGURED_S)
    for seconds in (3.4, 4.0, 3.6):
        timer.answered(seconds)
    assert timer.timeout_s() == SLOWEST_FACTOR * 4.0
    quick = AnswerTimer(CONFIGURED_S)
    for _ in range(LEARNED_AFTER):
        quick.answered(0.1)
    assert quick.timeout_s() == MIN_WAIT_S
    slow = AnswerTimer(CONFIGURED_S)
    for _ in range(LEARNED_AFTER):
        slow.answered(9.0)
    assert slow.timeout_s() == CONFIGURED_S


def test_each_timeout_in_a_row_doubles_the_wait_and_an_answer_ends_the_run_of_them() -> None:
    timer = AnswerTimer(60.0)
    for _ in range(LEARNED_AFTER):
        timer.answered(3.0)
    waits = [timer.timeout_s()]
    for _ in range(3):
        timer.timed_out()
        waits.append(timer.timeout_s())
    timer.answered(3.0)
    assert waits == [7.5, 15.0, 30.0, 60.0]
    assert timer.timeout_s() == 7.5
