"""The server's clock as its answers tell it (fake local clocks, no sleeping)."""

import pytest

from ingest.api.server_clock import ServerClock

RFC_DATE_S = 784_111_777  # Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date


class FakeClocks:
    """A local wall clock (epoch s) and a monotonic one, both set by the test."""

    def __init__(self, wall: float = 1_700_000_000.0) -> None:
        self.wall_s = wall
        self.mono_s = 500.0

    def wall(self) -> float:
        return self.wall_s

    def mono(self) -> float:
        return self.mono_s

    def server_clock(self) -> ServerClock:
        return ServerClock(wall=self.wall, clock=self.mono)


def test_before_any_answer_it_is_the_local_wall_clock() -> None:
    clocks = FakeClocks(wall=1_700_000_000.25)
    assert clocks.server_clock().now_ms() == 1_700_000_000_250


@pytest.mark.parametrize(
    "date", ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"]
)
def test_a_date_header_sets_the_time_and_the_monotonic_clock_moves_it_on(date: str) -> None:
    clocks = FakeClocks()  # the local wall clock is 29 years ahead of this server
    clock = clocks.server_clock()
    clock.observe_date(date)
    assert clock.now_ms() == RFC_DATE_S * 1000
    clocks.mono_s += 2.5
    clocks.wall_s -= 3600  # a local wall clock that jumps changes nothing
    assert clock.now_ms() == RFC_DATE_S * 1000 + 2500


@pytest.mark.parametrize("date", [None, "", "soon", "Sun, 99 Nov 1994 08:49:37 GMT"])
def test_an_absent_or_unreadable_date_changes_nothing(date: str | None) -> None:
    clocks = FakeClocks()
    clock = clocks.server_clock()
    clock.observe_date("Sun, 06 Nov 1994 08:49:37 GMT")
    clock.observe_date(date)
    assert clock.now_ms() == RFC_DATE_S * 1000


def test_the_newest_date_wins_so_a_corrected_server_clock_is_followed() -> None:
    clocks = FakeClocks()
    clock = clocks.server_clock()
    clock.observe_date("Sun, 06 Nov 1994 08:49:37 GMT")
    clocks.mono_s += 10
    clock.observe_date("Sun, 06 Nov 1994 08:40:00 GMT")  # the server's clock was set back
    clocks.mono_s += 1
    assert clock.now_ms() == (RFC_DATE_S - 577 + 1) * 1000


def test_a_server_cursor_gives_the_time_of_the_clock_that_checks_it_and_outranks_dates() -> None:
    clocks = FakeClocks()
    clock = clocks.server_clock()
    clock.observe_date("Sun, 06 Nov 1994 08:49:37 GMT")
    clock.observe_cursor(exp_ms=RFC_DATE_S * 1000 + 5_000 + 117_000, expires_in_s=117)
    assert clock.now_ms() == RFC_DATE_S * 1000 + 5_000
    # a Date written by a proxy in front of the server does not override the server's own reading
    clock.observe_date("Sun, 06 Nov 1994 09:49:37 GMT")
    assert clock.now_ms() == RFC_DATE_S * 1000 + 5_000
    clocks.mono_s += 1
    clock.observe_cursor(exp_ms=RFC_DATE_S * 1000 + 7_000 + 116_000, expires_in_s=116)
    assert clock.now_ms() == RFC_DATE_S * 1000 + 7_000


@pytest.mark.parametrize(("exp_ms", "expires_in_s"), [(10**400, 117), (1_000, -1), (1_000, float("inf"))])
def test_a_cursor_that_gives_no_time_is_ignored(exp_ms: int, expires_in_s: float) -> None:
    clocks = FakeClocks(wall=1_700_000_000.0)
    clock = clocks.server_clock()
    clock.observe_cursor(exp_ms, expires_in_s)
    assert clock.now_ms() == 1_700_000_000_000
