"""Stream-token renewal is not a feed request: its failures do not pause the feed, and its waiters see a stop."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from ingest.api.client import Envelope, StreamGrant
from ingest.api.retry_policy import RetryPolicy
from ingest.api.sources import TOKEN_RENEW_BEFORE_S, StreamTokens
from ingest.budgets.budget import _open_feed
from ingest.budgets.limiter import RateLimiter
from ingest.budgets.pacer import Pacer
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import Throttle
from ingest.errors import RateLimited, Stopped, StreamTokenInvalid
from ingest.plan.scheduler import BUDGET_FAILURES
from ingest.stats import Stats
from tests.fix_clock import FakeClock

LIFE_S = 300.0


def grant(n: int) -> StreamGrant:
    return StreamGrant(endpoint="/internal/feed", token=f"t{n}", header="X-Stream-Token", expires_in_s=LIFE_S)


class FeedClient:
    """stream-access answers with `access_answers` in turn (an exception is raised); the feed always serves."""

    def __init__(self, access_answers: list[object]) -> None:
        self.access_answers = access_answers
        self.tokens_used: list[str] = []

    def stream_access(self) -> StreamGrant:
        answer = self.access_answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, StreamGrant)
        return answer

    def events_page(self, path, params, headers=None, **kwargs) -> Envelope:  # noqa: ANN001, ANN003
        self.tokens_used.append(headers["X-Stream-Token"])
        if headers["X-Stream-Token"] == "t1":
            raise StreamTokenInvalid("HTTP 401 token expired")
        return Envelope([], False, None, None)


def loop(name: str, clock: FakeClock, stop: threading.Event, pacer: Pacer | None = None) -> RetryLoop:
    throttle = Throttle(name, limiter=RateLimiter(clock=clock, sleep=clock.sleep), pacer=pacer, clock=clock)
    return RetryLoop(throttle, RetryPolicy(), Stats(), stop)


def test_a_429_of_stream_access_at_renewal_pauses_neither_the_feed_nor_its_pacer() -> None:
    """Defect 3 of issue 19: the renewal ran inside the feed's retry loop, so its 429 was the feed's."""
    clock, stop = FakeClock(), threading.Event()
    client = FeedClient([grant(1), RateLimited("HTTP 429", status=429, retry_after=2.0), grant(2)])
    access = loop("stream-access", clock, stop)
    feed_loop = loop("feed", clock, stop, Pacer(clock=clock, sleep=clock.sleep))
    settings = SimpleNamespace(strategy="auto", page_size=5000, request_timeout_s=15.0)
    feed = _open_feed(settings, client, access, feed_loop, "k")  # type: ignore[arg-type]
    assert feed is not None
    feed.retry.call(lambda: feed.source.page(None, None, None), "partition 1")
    assert client.tokens_used == ["t1", "t2"]
    assert feed.throttle.throttled == 0 and feed.throttle.pacer is not None
    assert feed.throttle.pacer.rate_per_s() is None and feed.throttle.wait_s() == 0.0
    assert access.throttle.throttled == 1


def test_a_chain_waiting_for_the_renewal_in_flight_sees_a_stop() -> None:
    stop = threading.Event()
    asked, release = threading.Event(), threading.Event()

    def slow_renewal() -> StreamGrant:
        asked.set()
        release.wait(30.0)
        return grant(2)

    clock = FakeClock()
    tokens = StreamTokens(FeedClient([]), grant(1), clock, fetch=slow_renewal, stop=stop)  # type: ignore[arg-type]
    clock.now += LIFE_S - TOKEN_RENEW_BEFORE_S
    renewing = threading.Thread(target=tokens.current)
    renewing.start()
    assert asked.wait(5.0)
    outcome: list[BaseException | StreamGrant] = []

    def waiter() -> None:
        try:
            outcome.append(tokens.current())
        except Stopped as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=waiter)
    waiting.start()
    stop.set()
    waiting.join(5.0)
    release.set()
    renewing.join(5.0)
    assert len(outcome) == 1 and isinstance(outcome[0], Stopped)


def test_one_renewal_serves_every_chain_that_found_the_token_stale() -> None:
    clock, stop = FakeClock(), threading.Event()
    client = FeedClient([grant(2)])
    tokens = StreamTokens(client, grant(1), clock, fetch=client.stream_access, stop=stop)  # type: ignore[arg-type]
    stale = tokens.current()
    assert tokens.renew(stale=stale).token == "t2"
    assert tokens.renew(stale=stale).token == "t2"  # already replaced: no second request
    with pytest.raises(IndexError):
        client.stream_access()  # its one answer was used once


def test_a_stream_token_refused_on_every_attempt_retires_the_feed_not_the_run() -> None:
    """Defect 8 of issue 19: a plain FatalApiError stopped the run while the pools could go on."""
    clock, stop = FakeClock(), threading.Event()
    feed_loop = loop("feed", clock, stop)

    def refused() -> None:
        raise StreamTokenInvalid("HTTP 401 token invalid")

    with pytest.raises(BUDGET_FAILURES):
        feed_loop.call(refused, "partition 1")
