"""The server's clock as its answers tell it (fake local clocks, no sleeping)."""

import pytest

from ingest.api.server_clock import ServerClock
from tests.fix_clock import FakeClock

RFC_DATE_S = 784_111_777  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date


def clocks_at(wall: float = 1_700_000_000.0) -> FakeClock:
    """A local wall clock (epoch s) and a monotonic one, both moved by the test."""
    return FakeClock(start=500.0, wall_at_start=wall)


def server_clock(clocks: FakeClock) -> ServerClock:
    return ServerClock(wall=clocks.wall, clock=clocks.mono)


def test_before_any_answer_it_is_the_local_wall_clock() -> None:
    clocks = clocks_at(1_700_000_000.25)
    assert server_clock(clocks).now_ms() == 1_700_000_000_250


@pytest.mark.parametrize(
    "date", ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"]
)
def test_a_date_header_sets_the_time_and_the_monotonic_clock_moves_it_on(date: str) -> None:
    clocks = clocks_at()  # the local wall clock is 29 years ahead of this server
    clock = server_clock(clocks)
    clock.observe_date(date)
    assert clock.now_ms() == RFC_DATE_S * 1000
    clocks.advance(2.5)
    clocks.step_wall(-3600)  # a local wall clock that jumps changes nothing
    assert clock.now_ms() == RFC_DATE_S * 1000 + 2500


@pytest.mark.parametrize("date", [None, "", "soon", "Sun, 99 Nov 1994 08:49:37 GMT"])
def test_an_absent_or_unreadable_date_changes_nothing(date: str | None) -> None:
    clocks = clocks_at()
    clock = server_clock(clocks)
    clock.observe_date("Sun, 06 Nov 1994 08:49:37 GMT")
    clock.observe_date(date)
    assert clock.now_ms() == RFC_DATE_S * 1000


def test_the_newest_date_wins_so_a_corrected_server_clock_is_followed() -> None:
    clocks = clocks_at()
    clock = server_clock(clocks)
    clock.observe_date("Sun, 06 Nov 1994 08:49:37 GMT")
    clocks.advance(10)
    clock.observe_date("Sun, 06 Nov 1994 08:40:00 GMT")  # the server's clock was set back
    clocks.advance(1)
    assert clock.now_ms() == (RFC_DATE_S - 577 + 1) * 1000


def test_a_server_cursor_gives_the_time_of_the_clock_that_checks_it_and_outranks_dates() -> None:
    clocks = clocks_at()
    clock = server_clock(clocks)
    clock.observe_date("Sun, 06 Nov 1994 08:49:37 GMT")
    clock.observe_cursor(exp_ms=RFC_DATE_S * 1000 + 5_000 + 117_000, expires_in_s=117)
    assert clock.now_ms() == RFC_DATE_S * 1000 + 5_000
    # a Date written by a proxy in front of the server does not override the server's own reading
    clock.observe_date("Sun, 06 Nov 1994 09:49:37 GMT")
    assert clock.now_ms() == RFC_DATE_S * 1000 + 5_000
    clocks.advance(1)
    clock.observe_cursor(exp_ms=RFC_DATE_S * 1000 + 7_000 + 116_000, expires_in_s=116)
    assert clock.now_ms() == RFC_DATE_S * 1000 + 7_000


@pytest.mark.parametrize(("exp_ms", "expires_in_s"), [(10**400, 117), (1_000, -1), (1_000, float("inf"))])
def test_a_cursor_that_gives_no_time_is_ignored(exp_ms: int, expires_in_s: float) -> None:
    clocks = clocks_at(1_700_000_000.0)
    clock = server_clock(clocks)
    clock.observe_cursor(exp_ms, expires_in_s)
    assert clock.now_ms() == 1_700_000_000_000
