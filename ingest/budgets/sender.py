"""The retry loop every request of a budget goes through: its throttle first, our backoff after failures."""

from __future__ import annotations

import threading
import time
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

    def __init__(self, throttle: Throttle, policy: RetryPolicy, stats: Stats, stop: threading.Event,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.throttle = throttle
        self.policy = policy
        self.stats = stats
        self.stop = stop
        self._clock = clock

    def call(self, send: Callable[[], T], what: str, *, hand_back: Callable[[], bool] = lambda: False) -> T:
        """`send()` until it succeeds; raises Stopped, RetriesExhausted or what `send` raises that is final.

        `hand_back` is asked before each attempt, retries included: True raises HandedBack instead of
        waiting for the budget's next turn (a spent window or a 429 lockout may keep it minutes).
        """
        attempt = 0
        while True:
            if hand_back():
                raise HandedBack(what)
            attempt += 1
            done, result, failure = self._attempt(send, what, attempt, hand_back)
            if done:
                return cast(T, result)
            assert failure is not None
            throttled = isinstance(failure, RateLimited)
            self.stats.count(retries=1, throttled=throttled)
            self.throttle.count_failure(throttled=throttled)
            if not isinstance(failure, RetryableApiError):  # a stream token the source renewed: send again now
                if self.policy.gives_up(attempt):
                    raise StreamAccessDenied(f"{what}: stream token refused {attempt} times") from None
                continue
            if self.policy.gives_up(attempt):
                raise RetriesExhausted(f"{what}: gave up after {attempt} attempts: {failure}") from failure
            self._wait_after(failure, attempt, what)

    def _attempt(self, send: Callable[[], T], what: str, attempt: int, hand_back: Callable[[], bool],
                 ) -> tuple[bool, T | None, RetryableApiError | StreamTokenInvalid | None]:
        """One request in the budget's turn: (True, its result, None), or (False, None, the failure to retry).

        Failures that are final propagate; so does HandedBack when `hand_back` turns true during the wait.
        """
        with self.throttle.turn(self.stop, hand_back) as admitted:
            if self.stop.is_set():
                raise Stopped(0)
            if not admitted:
                raise HandedBack(what)
            logger.debug("{}: request (attempt {}, {})", what, attempt, self.throttle.name)
            started = self._clock()
            try:
                result = send()
            except (RetryableApiError, StreamTokenInvalid) as exc:
                return False, None, exc
        self.throttle.on_success(self._clock() - started)
        return True, result, None

    def _wait_after(self, exc: RetryableApiError, attempt: int, what: str) -> None:
        backoff = self.policy.backoff(attempt)
        if isinstance(exc, RateLimited):
            # Every chain of this budget waits the full Retry-After: an early retry extends the lockout.
            delay = self.throttle.on_rate_limited(exc.retry_after, backoff)
            logger.warning("{}: rate limited on {}, its chains wait {:.1f} s (attempt {})", what, self.throttle.name,
                           delay, attempt)
            return
        logger.warning("{}: {} — retry {} in {:.2f} s", what, exc, attempt, backoff)
        self.stop.wait(backoff)
