"""The retry loop every request of a budget goes through: its throttle first, our backoff after failures."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar, cast

from loguru import logger

from ingest.api.retry_policy import RetryPolicy
from ingest.budgets.throttle import Throttle
from ingest.errors import (
    HandedBack,
    RateLimited,
    RetriesExhausted,
    RetryableApiError,
    Stopped,
    StreamAccessDenied,
    StreamTokenInvalid,
)
from ingest.stats import Stats

T = TypeVar("T")


class RetryLoop:
    """Sends through one budget's throttle and retries what may be retried, as the policy says."""

    def __init__(self, throttle: Throttle, policy: RetryPolicy, stats: Stats, stop: threading.Event) -> None:
        self.throttle = throttle
        self.policy = policy
        self.stats = stats
        self.stop = stop

    def call(self, send: Callable[[], T], what: str, *, hand_back: Callable[[], bool] = lambda: False) -> T:
        """`send()` until it succeeds; raises Stopped, RetriesExhausted or what `send` raises that is final.

        `hand_back` is asked before each attempt and while it waits for its turn: True raises HandedBack
        instead of waiting on (a spent window or a 429 lockout may keep the budget minutes).
        """
        attempt = 0
        while True:
            if hand_back():
                raise HandedBack(what)
            attempt += 1
            failure, result = self._attempt(send, what, attempt, hand_back)
            if failure is None:
                return cast(T, result)
            if self.policy.gives_up(attempt):
                if isinstance(failure, StreamTokenInvalid):  # the feed, not the run: the pools go on
                    raise StreamAccessDenied(f"{what}: stream token refused {attempt} times") from None
                raise RetriesExhausted(f"{what}: gave up after {attempt} attempts: {failure}") from failure
            if isinstance(failure, RetryableApiError) and not isinstance(failure, RateLimited):
                backoff = self.policy.backoff(attempt)  # a 429 waits in the budget's pause, a renewed token not at all
                logger.warning("{}: {} — retry {} in {:.2f} s", what, failure, attempt, backoff)
                self.stop.wait(backoff)

    def _attempt(self, send: Callable[[], T], what: str, attempt: int, hand_back: Callable[[], bool],
                 ) -> tuple[RetryableApiError | StreamTokenInvalid | None, T | None]:
        """One request in the budget's turn: (None, its result), or (the failure to retry, None).

        Failures that are final propagate; so does HandedBack when `hand_back` turns true during the wait.
        """
        with self.throttle.turn(self.stop, hand_back) as admitted:
            if self.stop.is_set():
                raise Stopped(0)
            if not admitted:
                raise HandedBack(what)
            logger.debug("{}: request (attempt {}, {})", what, attempt, self.throttle.name)
            try:
                result = send()
            except (RetryableApiError, StreamTokenInvalid) as exc:
                # Still holding the slot: a chain let go now must find the 429's pause already set.
                self._count_failure(exc, what, attempt)
                return exc, None
        self.throttle.on_success()
        return None, result

    def _count_failure(self, exc: RetryableApiError | StreamTokenInvalid, what: str, attempt: int) -> None:
        self.stats.count(retries=1, throttled=isinstance(exc, RateLimited))
        if isinstance(exc, RateLimited):
            # Every chain of this budget waits the full Retry-After: an early retry extends the lockout.
            delay = self.throttle.on_rate_limited(exc.retry_after, self.policy.backoff(attempt), exc.limit)
            logger.warning("{}: rate limited on {}, its chains wait {:.1f} s (attempt {})", what, self.throttle.name,
                           delay, attempt)
