from __future__ import annotations

import heapq
import itertools
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from ingest.budgets.limiter import SLEEP_SLICE_S, RateLimiter
from tests.fix_clock import EPOCH_AT_START, START, FakeClock


class FixedWindowServer:
    """The live API's bucket: `limit` requests per fixed window opened by the first request."""

    def __init__(self, clock: Callable[[], float], limit: int, window_s: float, whole_seconds: bool = True,
                 announce: Callable[[float], float] | None = None):
        """`announce`: the Reset said for the seconds left (default: rounded up, or exact)."""
        self.clock, self.limit, self.window_s = clock, limit, window_s
        self.announce = announce or (math.ceil if whole_seconds else (lambda left: left))
        self.counts: list[int] = []  # requests per window, in order
        self.statuses: list[int] = []
        self._end = -math.inf
        self._lock = threading.Lock()

    def handle(self) -> tuple[int, int, float]:
        """Count one request; returns the (Limit, Remaining, Reset) headers of its response."""
        with self._lock:
            now = self.clock()
            if now >= self._end:
                self._end = now + self.window_s
                self.counts.append(0)
            self.counts[-1] += 1
            self.statuses.append(200 if self.counts[-1] <= self.limit else 429)
            left = self._end - now
            return self.limit, max(0, self.limit - self.counts[-1]), self.announce(left)


def join_all(pool: list[threading.Thread]) -> None:
    """Wait for the threads; the timeout only turns a hang into a failure, it is no race."""
    for thread in pool:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in pool)


def make_limiter(clock: FakeClock, margin: float = 0.5, probe_margin: float | None = None) -> RateLimiter:
    """No probe unless asked: these tests are about other rules, and a probe moves a window's first request."""
    return RateLimiter(clock=clock, wall=clock.wall, sleep=clock.sleep, reset_margin=margin,
                       probe_margin=probe_margin)


def fetch(limiter: RateLimiter, server: FixedWindowServer, transit_s: float = 0.0,
          clock: FakeClock | None = None) -> float:
    """One fetcher step: acquire, send (`transit_s` on the way), keep in step with the answer, or wait
    out a 429 as the sender does (Retry-After + 1 s); returns the seconds waited."""
    waited = limiter.acquire()
    if clock is not None:
        clock.advance(transit_s)
    limit, remaining, reset = server.handle()
    limiter.observe(limit, remaining, reset)  # a 429 carries the headers too, and the client reads them first
    if server.statuses[-1] == 429:
        limiter.pause_for(reset + 1.0)
    return waited


def test_ten_requests_pass_then_the_eleventh_waits_until_the_window_resets() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    server = FixedWindowServer(clock, limit=10, window_s=60)
    waits = [fetch(limiter, server) for _ in range(11)]
    assert (waits, server.counts, set(server.statuses)) == ([0.0] * 10 + [60.5], [10, 1], {200})


def test_tokens_are_taken_at_acquire_so_requests_in_flight_count() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.observe(10, 5, 30)
    waits = [limiter.acquire() for _ in range(6)]  # no answers yet
    assert waits == [0.0] * 5 + [30.5]


def test_a_lower_remaining_from_the_server_wins_over_the_local_count() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.observe(10, 9, 60)
    limiter.observe(10, 2, 59)  # someone else spends the same key's bucket
    waits = [limiter.acquire() for _ in range(3)]
    assert waits == [0.0, 0.0, 59.5]


def test_a_later_answer_does_not_push_the_window_end_out() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.observe(10, 9, 60)
    clock.advance(5)
    limiter.observe(10, 0, 58)  # a slow answer: now + 58 is later than the first announcement
    assert limiter.acquire() == 55.5


def test_another_pool_drawing_on_the_bucket_caps_what_is_left_of_the_open_window() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.observe(10, 8, 60)
    limiter.cap_used(3)  # the ?api_key= pool's answer (its own Limit 5, Remaining 2): 3 of the window spent
    assert [limiter.acquire() for _ in range(7)] == [0.0] * 7  # 10 - 3 left, not its 2
    limiter.cap_used(5)  # a later answer never gives tokens back
    assert limiter.acquire() == 60.5


def test_our_requests_sent_after_the_other_pools_counted_one_are_taken_from_what_it_says_is_left() -> None:
    """Seen with `?api_key=` sharing the header bucket: the query pool's answer said 2 of 10 spent when its
    request arrived, but a header request sent after it had gone too. Capping at 10 - 2 let an 11th go: a 429."""
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.acquire()
    limiter.observe(10, 9, 60)
    query_sent_at = clock() + 0.03
    clock.advance(3.6)
    limiter.acquire()  # after the query request: it may have arrived after it, and is not in its count
    limiter.cap_used(2, counted_at=query_sent_at)  # the header's first request and the query's own
    assert [limiter.acquire() for _ in range(8)] == [0.0] * 7 + [pytest.approx(56.9)]


def test_the_other_pools_count_that_comes_before_our_first_answer_caps_the_window_it_opens() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.acquire()  # the header pool's first request, sent just before the query pool's
    limiter.cap_used(2, counted_at=clock() + 0.03)  # the query pool's answer comes first: 2 of 10 spent
    limiter.observe(10, 9, 60)  # ours, counted before the query request arrived
    assert [limiter.acquire() for _ in range(9)] == [0.0] * 8 + [pytest.approx(60.5)]


def test_epoch_form_reset_is_read_against_the_wall_clock() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.observe(100, 0, EPOCH_AT_START + 20)
    assert limiter.acquire() == 20.5


def test_without_headers_nothing_is_restricted() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.observe(None, None, None)
    limiter.observe(10, None, None)  # a Limit alone says nothing about this window
    waits = [limiter.acquire() for _ in range(1000)]
    assert (set(waits), clock.sleeps, limiter.waited_seconds) == ({0.0}, [], 0.0)


def test_missing_limit_header_falls_back_to_the_largest_allowance_seen() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.observe(None, 3, 10)
    waits = [limiter.acquire() for _ in range(7)]
    assert waits == [0.0, 0.0, 0.0, 10.5, 0.0, 0.0, 10.5]  # then windows of 3, lasting the Reset seen


def test_an_answer_from_before_the_window_rolled_does_not_drain_the_new_window() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    server = FixedWindowServer(clock, limit=10, window_s=60)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="slow-fetcher") as slow:
        [fetch(limiter, server) for _ in range(9)]
        clock.advance(59.9)
        slow.submit(limiter.acquire).result()  # the old window's last token
        late_answer = server.handle()  # remaining 0, reset 1: true of the old window only
        clock.advance(1.1)  # the answer arrives after the window rolled
        waits = [fetch(limiter, server)]
        slow.submit(limiter.observe, *late_answer).result()
        waits += [fetch(limiter, server) for _ in range(10)]
    assert (waits, server.counts, set(server.statuses)) == ([0.0] * 10 + [60.5], [10, 10, 1], {200})


def test_a_window_guessed_too_short_is_corrected_by_its_first_answer() -> None:
    """Seen at 3M on the query pool: the request that opened its first window timed out, so the first
    answer came 15 s in (Reset 45) and 45 s became the window's length. The second window's end, guessed
    45 s after its opener, was trusted over its answers' 60 s: two requests went 15 s into a lockout."""
    clock = FakeClock()
    limiter = make_limiter(clock, margin=1.0)
    server = FixedWindowServer(clock, limit=5, window_s=60)
    limiter.acquire()
    server.handle()  # the opener, whose answer is lost
    clock.advance(15)
    waits = [fetch(limiter, server) for _ in range(4)]  # the first answer: Remaining 3, Reset 45
    waits += [fetch(limiter, server) for _ in range(6)]  # the second window, then the third's opener
    assert (waits, server.counts, set(server.statuses)) == ([0.0] * 4 + [46.0] + [0.0] * 4 + [61.0], [5, 5, 1], {200})


def test_on_a_server_that_rounds_up_one_probe_opens_the_window_and_later_ends_take_the_probe_margin() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=1.0, probe_margin=0.2)
    server = FixedWindowServer(clock, limit=10, window_s=60)
    waits = [round(fetch(limiter, server), 6) for _ in range(21)]
    # the 11th is the probe, 0.2 s after the announced end; its answer lets the other 9 go at once
    assert (waits, server.counts, set(server.statuses)) == ([0.0] * 10 + [60.2] + [0.0] * 9 + [60.2], [10, 10, 1],
                                                            {200})


def test_on_a_server_that_rounds_down_the_probe_comes_early_once_and_the_full_margin_holds_after() -> None:
    """Reset rounded down hides up to a second of window: the probe, sent 0.2 s after the announced end,
    lands inside it. Its 429 is the only one: the full margin holds from then on."""
    clock = FakeClock()
    limiter = make_limiter(clock, margin=1.0, probe_margin=0.2)
    server = FixedWindowServer(clock, limit=10, window_s=60, announce=math.floor)
    waits = [fetch(limiter, server, 0.1, clock) for _ in range(32)]
    assert server.statuses.count(429) == 1 and server.statuses[10] == 429
    assert server.counts == [11, 10, 10, 1]  # the probe's 429 counted in the first window
    # announced end 59.0 (the opener's Reset, 59.99 rounded down): the probe 0.2 s after it, then Retry-After 0 + 1 s
    assert [round(wait, 1) for wait in waits[10:12]] == [58.2, 1.0]


def test_a_probe_left_unanswered_holds_the_rest_only_until_the_full_margin() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=1.0, probe_margin=0.2)
    limiter.observe(10, 0, 30)
    assert limiter.wait_s() == pytest.approx(30.2) and limiter.wait_s(probe=False) == pytest.approx(31.0)
    assert limiter.acquire() == pytest.approx(30.2)  # the probe; its answer never comes
    assert limiter.wait_s() == pytest.approx(0.8) and limiter.spare_tokens() == 0
    clock.advance(0.8)
    assert limiter.spare_tokens() == 9  # the window is open by now: a fan-out may count on its requests
    assert [limiter.acquire() for _ in range(9)] == [0.0] * 9
    assert limiter.wait_s() == pytest.approx(29.4)  # ten in the window the probe opened: its end, the next probe


def test_an_answer_in_the_current_window_is_believed_even_from_another_thread() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.observe(10, 9, 60)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetcher") as other:
        other.submit(limiter.acquire).result()
        other.submit(limiter.observe, 10, 0, 60).result()
    assert limiter.acquire() == 60.5


def test_a_429_pause_is_waited_out_in_full() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.pause_for(30)
    assert (limiter.acquire(), clock(), max(clock.sleeps)) == (30.0, START + 30, SLEEP_SLICE_S)


def test_a_sleep_that_wakes_early_does_not_end_a_pause_early() -> None:
    clock = FakeClock(wakes_after=0.3)
    limiter = make_limiter(clock)
    limiter.pause_for(10)
    waited = limiter.acquire()
    assert (waited >= 10.0, clock() >= START + 10) == (True, True)


def test_429_pauses_every_fetcher_until_the_deadline() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.pause_for(30)
    returned_at: list[float] = []
    lock = threading.Lock()

    def fetcher() -> None:
        limiter.acquire()
        with lock:
            returned_at.append(clock())

    threads = [threading.Thread(target=fetcher, name=f"fetch-{i}") for i in range(6)]
    for thread in threads:
        thread.start()
    join_all(threads)
    assert [t >= START + 30 for t in returned_at] == [True] * 6


def test_a_pause_is_never_shortened() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.pause_for(30)
    limiter.pause_for(10)
    limiter.pause_for(5)
    assert limiter.acquire() == 30.0


def test_a_longer_pause_extends_the_current_one() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.pause_for(10)
    limiter.pause_for(45)
    assert limiter.acquire() == 45.0


def test_waited_seconds_adds_up_every_wait() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, margin=0.5)
    limiter.pause_for(30)
    first = limiter.acquire()
    limiter.observe(10, 0, 20)
    second = limiter.acquire()
    assert (first, second, limiter.waited_seconds) == (30.0, 20.5, 50.5)


def test_stop_ends_a_wait_early_without_taking_a_token() -> None:
    clock = FakeClock()
    stop = threading.Event()

    def sleep_then_stop(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:
            stop.set()

    limiter = RateLimiter(clock=clock, wall=clock.wall, sleep=sleep_then_stop)
    limiter.pause_for(100)
    assert (limiter.acquire(stop), clock(), limiter.acquire(stop)) == (1.5, START + 1.5, 0.0)


def test_a_stop_already_set_returns_at_once() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.observe(10, 1, 60)
    stop = threading.Event()
    stop.set()
    assert (limiter.acquire(stop), limiter.acquire(), clock.sleeps) == (0.0, 0.0, [])


class VirtualTime:
    """A clock shared by real threads that moves only when every one of them sleeps.

    A sleeping thread waits until all registered threads sleep (or have finished), then time jumps to the
    earliest wake-up. So no time passes while any thread is between `acquire` and the server's answer:
    a request is never in flight across a window's end, however slowly the machine runs the threads.
    """

    def __init__(self, threads: int) -> None:
        self.now = START
        self._running = threads  # registered threads not asleep
        self._sleepers: list[tuple[float, int, list[bool]]] = []  # heap of (wake at, order, [woken])
        self._order = itertools.count()
        self._changed = threading.Condition()

    def __call__(self) -> float:
        with self._changed:
            return self.now

    def wall(self) -> float:
        return EPOCH_AT_START + (self() - START)

    def sleep(self, seconds: float) -> None:
        with self._changed:
            woken = [False]
            heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), woken))
            self._running -= 1
            self._advance_if_all_asleep()
            while not woken[0]:
                self._changed.wait()

    def finished(self) -> None:
        """A registered thread is done: time may move without it."""
        with self._changed:
            self._running -= 1
            self._advance_if_all_asleep()

    def _advance_if_all_asleep(self) -> None:
        if self._running > 0 or not self._sleepers:
            return
        self.now = max(self.now, self._sleepers[0][0])
        while self._sleepers and self._sleepers[0][0] <= self.now:
            heapq.heappop(self._sleepers)[2][0] = True
            self._running += 1  # counted as running from now, before it gets the lock back
        self._changed.notify_all()


def fetch_in_threads(limiter: RateLimiter, server: FixedWindowServer, clock: VirtualTime, threads: int,
                     requests: int) -> None:
    """`threads` fetchers send `requests` in all through one limiter, each as soon as it may."""
    budget = iter(range(requests))
    lock = threading.Lock()

    def fetcher() -> None:
        try:
            while True:
                with lock:
                    if next(budget, None) is None:
                        return
                fetch(limiter, server)
        finally:
            clock.finished()

    pool = [threading.Thread(target=fetcher, name=f"fetch-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    join_all(pool)


@pytest.mark.parametrize("threads", [2, 7])
def test_threads_sharing_a_limiter_never_exceed_the_limit_per_window(threads: int) -> None:
    """Real threads racing for tokens, virtual time: 3 requests per 50 ms window, 18 requests in all."""
    clock = VirtualTime(threads)
    limiter = RateLimiter(clock=clock, wall=clock.wall, sleep=clock.sleep, reset_margin=0.01)
    server = FixedWindowServer(clock, limit=3, window_s=0.05, whole_seconds=False)
    fetch(limiter, server)  # the first answer tells the limiter the limit; until then nothing is held back
    fetch_in_threads(limiter, server, clock, threads, 17)
    # 18 requests at 3 per window: every window full, none overfilled, nothing refused
    assert (server.counts, set(server.statuses)) == ([3] * 6, {200})
    assert clock() - START == pytest.approx(5 * 0.06)  # five waits of a window and its margin


@pytest.mark.parametrize("late_s", [0.0, 0.03])
def test_threads_waiting_on_a_spent_window_let_one_probe_go_early(late_s: float) -> None:
    """7 threads, 3 requests per 1 s window, 0.5 s margin, 0.02 s probe. A server whose Reset is exact: every
    window opens at the probe, and each later end takes 0.02 s. One that announces its ends `late_s` early
    (as rounding down does): the probe alone meets a 429, and the margin holds after it."""
    clock = VirtualTime(7)
    limiter = RateLimiter(clock=clock, wall=clock.wall, sleep=clock.sleep, reset_margin=0.5, probe_margin=0.02)
    server = FixedWindowServer(clock, limit=3, window_s=1.0, announce=lambda left: left - late_s)
    fetch(limiter, server)
    fetch_in_threads(limiter, server, clock, 7, 17)
    if late_s:
        assert server.statuses.count(429) == 1 and server.counts == [4, 3, 3, 3, 3, 2]  # the 429 is not retried
        # the probe at 0.99 s meets the 429, whose pause (Reset -0.02 + 1 s) ends at 1.97 s; then full margins
        assert clock() - START == pytest.approx(1.97 + 4 * (1.0 - late_s + 0.5))
    else:
        assert set(server.statuses) == {200} and server.counts == [3] * 6
        assert clock() - START == pytest.approx(5 * 1.02)  # at the probe margin from the first end on
