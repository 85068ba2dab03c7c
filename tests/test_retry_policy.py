from __future__ import annotations

import pytest

from ingest.api.retry_policy import MAX_RETRY_AFTER_S, RetryPolicy
from ingest.errors import FatalApiError

POLICY = RetryPolicy(max_attempts=8, backoff_base_s=0.5, backoff_cap_s=30.0)
NOW = 784_111_777.0  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (6, 16.0), (7, 30.0), (8, 30.0), (10_000, 30.0)],
)
def test_backoff_ceiling_doubles_from_base_up_to_cap(attempt: int, ceiling: float) -> None:
    assert POLICY.backoff(attempt, rand=lambda: 0.999999) == pytest.approx(ceiling, rel=1e-5)


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 0.0), (0.25, 1.0), (0.5, 2.0)])
def test_backoff_is_full_jitter_scaled_by_rand(rand: float, expected: float) -> None:
    assert POLICY.backoff(4, rand=lambda: rand) == expected


@pytest.mark.parametrize("attempt", [0, -1])
def test_backoff_rejects_attempts_below_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        POLICY.backoff(attempt)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"Retry-After": " 120 "}, 120.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"RETRY-AFTER": "7"}, 7.0),
        ({"Retry-After": "Sun, 06 Nov 1994 08:50:07 GMT"}, 30.0),
        ({"Retry-After": "Sunday, 06-Nov-94 08:50:07 GMT"}, 30.0),
        ({"Retry-After": "Sun Nov  6 08:50:07 1994"}, 30.0),
        ({"Retry-After": "Sun, 06 Nov 1994 08:49:07 GMT"}, 0.0),
        ({}, None),
        ({"X-RateLimit-Reset": "5"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-5"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "1e3"}, None),
    ],
)
def test_retry_after_reads_seconds_or_http_date(headers: dict[str, str], expected: float | None) -> None:
    assert POLICY.retry_after(headers, wall=lambda: NOW) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "301"},
        {"Retry-After": "7200"},
        {"Retry-After": "99999999999999999999999"},
        {"Retry-After": "Sun, 06 Nov 1994 10:49:37 GMT"},  # two hours after NOW
    ],
)
def test_a_retry_after_longer_than_any_rate_window_is_an_error_not_a_sleep(headers: dict[str, str]) -> None:
    with pytest.raises(FatalApiError, match=r"asked us to wait \d+ s .* longer than the 300 s"):
        POLICY.retry_after(headers, wall=lambda: NOW)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "300"}, 300.0), ({"Retry-After": "Sun, 06 Nov 1994 08:54:37 GMT"}, 300.0)],
)
def test_a_retry_after_of_exactly_the_cap_is_still_waited(headers: dict[str, str], expected: float) -> None:
    assert (MAX_RETRY_AFTER_S, POLICY.retry_after(headers, wall=lambda: NOW)) == (300.0, expected)


@pytest.mark.parametrize(
    ("seconds", "expected"), [(None, None), (-1.0, None), (float("nan"), None), (0.0, 0.0), (2.5, 2.5)]
)
def test_allowed_wait_passes_usable_seconds_and_drops_the_rest(seconds: float | None, expected: float | None) -> None:
    assert POLICY.allowed_wait(seconds) == expected


@pytest.mark.parametrize("seconds", [300.001, float("inf")])
def test_allowed_wait_refuses_a_wait_past_the_cap(seconds: float) -> None:
    with pytest.raises(FatalApiError, match="stopping instead of sleeping; rerun later to resume"):
        POLICY.allowed_wait(seconds)


@pytest.mark.parametrize(("attempt", "expected"), [(1, False), (7, False), (8, True), (9, True)])
def test_gives_up_after_max_attempts(attempt: int, expected: bool) -> None:
    assert POLICY.gives_up(attempt) is expected


def test_single_attempt_policy_gives_up_at_once() -> None:
    assert RetryPolicy(max_attempts=1).gives_up(1) is True


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"backoff_base_s": 0.0},
        {"backoff_base_s": -1.0},
        {"backoff_base_s": 10.0, "backoff_cap_s": 5.0},
        {"max_retry_after_s": 0.0},
    ],
)
def test_invalid_policy_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        POLICY.max_attempts = 3  # type: ignore[misc]
