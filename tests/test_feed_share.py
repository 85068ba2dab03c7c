"""The feed found drawing on the header pool's bucket: from its 429s, never from a refill's or another bucket's."""

from __future__ import annotations

from ingest.budgets.feed_share import FeedShareWatch
from ingest.budgets.limiter import RateLimiter
from ingest.budgets.pacer import Pacer
from ingest.budgets.throttle import RETRY_AFTER_MARGIN_S, Throttle
from tests.fix_clock import FakeClock

MARGIN_S = 0.5  # the limiter's Reset margin in these tests


def pair(clock: FakeClock) -> tuple[Throttle, Throttle, FeedShareWatch]:
    """A key's feed and header pool; the header pool has announced 10 per window, 60 s left."""
    def limiter() -> RateLimiter:
        return RateLimiter(clock=clock, wall=clock.wall, sleep=clock.sleep, reset_margin=MARGIN_S)

    feed = Throttle("feed", limiter=limiter(), pacer=Pacer(clock=clock, sleep=clock.sleep), clock=clock)
    header = Throttle("header", limiter=limiter(), clock=clock)
    header.limiter.acquire()
    header.observe(10, 9, 60)
    return feed, header, FeedShareWatch(feed, header, clock=clock)


def test_a_feed_429_naming_the_header_limit_and_ending_with_its_window_couples_the_two() -> None:
    clock = FakeClock()
    feed, header, watch = pair(clock)
    clock.advance(4.0)
    feed.on_rate_limited(55.0, 1.0, limit=10)  # ends 60 s after the header's window opened, with our margin
    assert watch.shared and feed.limiter is header.limiter
    assert header.wait_s() >= 55.0  # the header pool does not send into the feed's lockout
    header.limiter.acquire()  # and after it, the feed's requests take the header window's tokens
    assert feed.limiter.spare_tokens() == header.limiter.spare_tokens()


def test_two_window_long_429s_of_one_limit_ending_together_couple_the_two() -> None:
    """Seen at 300k on a shared bucket, the header pool's window not yet announced when the feed was refused:
    the header pool's next request met the lockout, and each extended it for the other."""
    clock = FakeClock()
    feed = Throttle("feed", pacer=Pacer(clock=clock, sleep=clock.sleep), clock=clock)
    header = Throttle("header", limiter=RateLimiter(clock=clock, sleep=clock.sleep), clock=clock)
    watch = FeedShareWatch(feed, header, clock=clock)
    feed.on_rate_limited(56.0, 1.0, limit=10)
    assert not watch.shared  # one refusal alone proves nothing
    clock.advance(0.8)
    header.on_rate_limited(55.0, 1.0, limit=10)
    assert watch.shared and feed.limiter is header.limiter
    assert feed.wait_s() >= 56.0 - 0.8 + RETRY_AFTER_MARGIN_S - 1e-6


def test_a_refill_a_far_end_or_another_limit_couples_nothing() -> None:
    clock = FakeClock()
    feed, header, watch = pair(clock)
    feed.on_rate_limited(2.0, 1.0, limit=10)  # a refill's Retry-After: the soft 40/min bucket
    feed.on_rate_limited(58.5, 1.0, limit=40)  # the feed's own fixed window, ending with the header's
    feed.on_rate_limited(58.5, 1.0, limit=None)  # a body that names no bucket
    clock.advance(20.0)
    feed.on_rate_limited(56.0, 1.0, limit=10)  # a window of 10 that ends 20 s after the header's
    header.on_rate_limited(40.0, 1.0, limit=10)  # the header pool's own lockout ends with its own window
    assert not watch.shared and feed.limiter is not header.limiter
