"""Budgets: every rate allowance the API grants (the feed, the header pool, the query pool, for each key),
drawn on at once. What a budget is and the query pool's probation: docs/scheduling.md ("Budgets")."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from loguru import logger

from ingest.api.client import ApiClient, LimitObserver, StreamGrant
from ingest.api.retry_policy import RetryPolicy
from ingest.api.sources import DocumentedSource, FeedSource, Source, StreamTokens
from ingest.budgets.answer_timeout import AnswerTimer
from ingest.budgets.feed_share import FeedShareWatch
from ingest.budgets.pacer import Pacer
from ingest.budgets.sender import RetryLoop
from ingest.budgets.throttle import Throttle
from ingest.config import Settings, key_fingerprint
from ingest.errors import (
    AuthenticationFailed,
    BudgetRetired,
    FatalApiError,
    RetriesExhausted,
    StreamAccessDenied,
)
from ingest.stats import Stats

FEED, HEADER, QUERY = "feed", "header", "query"
EVENTS = "events"  # the family of the two documented pools (family.py)


@dataclass(eq=False)
class Budget:
    """One allowance: where its pages come from, its throttle, its retry loop."""

    name: str  # "feed", "header", "query", with "#2", "#3"... for further keys
    kind: str  # FEED, HEADER or QUERY
    source: Source
    retry: RetryLoop
    retired: str | None = field(default=None)  # why it takes no more work (None: it does)
    probe: QueryPoolProbe | None = None  # the query pool's, until its answers tell shared from separate
    key_id: str = ""  # its key's fingerprint: what it learned is kept for that key, not for a position in API_KEY
    family: str = ""  # the budgets advancing the same cursors share it (see family.py); "": its own name

    def __post_init__(self) -> None:
        self.throttle.one_at_a_time = lambda: self.on_probation

    @property
    def state_key(self) -> str:
        """The row its learned state is kept under: another key's buckets are fresh and take up none of it."""
        return f"{self.kind}@{self.key_id}" if self.key_id else self.name

    @property
    def throttle(self) -> Throttle:
        return self.retry.throttle

    def chains(self) -> int:
        """Chains this budget keeps busy now (0 once retired, 1 on probation)."""
        if self.retired is not None:
            return 0
        if self.on_probation:
            return 1
        return self.throttle.chains()

    @property
    def on_probation(self) -> bool:
        """The query pool before its verdict: one request at a time (its throttle's one slot)."""
        return self.probe is not None and self.probe.verdict is None

    def send_in_s(self) -> float:
        """Seconds until this budget can send (0: now; inf: retired). Every decision asks this one question."""
        return math.inf if self.retired is not None else self.throttle.wait_s()

    def retire(self, why: str) -> None:
        if self.retired is None:
            self.retired = why
            logger.warning("budget {} retired: {}", self.name, why)


class QueryPoolProbe:
    """Tells whether `?api_key=` has a pool of its own or draws on the header pool, from X-RateLimit-Remaining
    (the verdicts: docs/scheduling.md, "The query pool's probation"). It learns from answers only: a verdict
    costs no request of its own. `restarted`: the first window may count a killed run's requests."""

    def __init__(self, *, restarted: bool = False, on_shared: Callable[[int, float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._on_shared = on_shared  # told Limit - Remaining of the answer that proved it shared, and its send
        self._sent_at = 0.0  # when our last query request went (on probation, one is in flight at a time)
        self.verdict: str | None = None  # "separate" or "shared"
        self._last: tuple[float, int] | None = None  # (Reset, Remaining) of our last answer with both
        self._sent_since = 0  # our query requests sent since that answer, this one's included
        self._in_window: int | None = None if restarted else 0  # our sends in the current window (None: unknown)
        self._header_between = False  # the header pool answered since that answer

    def header_answered(self, limit: int | None, remaining: int | None, reset: float | None) -> None:  # noqa: ARG002
        with self._lock:
            self._header_between = True

    def query_sending(self) -> None:
        with self._lock:
            self._sent_since += 1
            self._sent_at = self._clock()

    def query_answered(self, limit: int | None, remaining: int | None, reset: float | None) -> None:
        if remaining is None or reset is None:
            return
        with self._lock:
            if self.verdict is not None:
                return
            last, self._last = self._last, (reset, remaining)
            sent, header_between = self._sent_since, self._header_between
            self._sent_since, self._header_between = 0, False
            new_window = last is not None and reset > last[0]  # Reset counts down within a window
            if new_window:
                self._in_window = sent  # some may have gone in the old window: counting them is the safe side
            elif self._in_window is not None:
                self._in_window += sent
            fall = last[1] - remaining if last is not None and not new_window else None
            if (limit is not None and self._in_window is not None and limit - remaining > self._in_window) or (
                    fall is not None and fall > sent):
                self.verdict = "shared"
            elif header_between and fall == sent:
                self.verdict = "separate"
        if self.verdict is not None:
            logger.info("the ?api_key= pool is {} (X-RateLimit-Remaining {} of {})", self.verdict, remaining, limit)
        if self.verdict == "shared" and self._on_shared is not None and limit is not None:
            self._on_shared(limit - remaining, self._sent_at)


class ProbationSource:
    """The query budget's source: counts each request for the probe, and sends none once the pool is shared."""

    kind = "documented"
    windowed = False

    def __init__(self, inner: DocumentedSource, probe: QueryPoolProbe) -> None:
        self._inner = inner
        self._probe = probe
        self.page_size = inner.page_size

    def page(self, cursor, lo_ms, hi_ms, limit=None, read_timeout_s=None):  # noqa: ANN001, ANN201 - Source protocol
        if self._probe.verdict == "shared":
            raise BudgetRetired("the ?api_key= pool shares the header pool's limit: it would only steal from that")
        self._probe.query_sending()
        return self._inner.page(cursor, lo_ms, hi_ms, limit, read_timeout_s)


def share_lockouts(probe: QueryPoolProbe, query: Throttle, header: Throttle) -> None:
    """Once the query pool is proven to draw on the header pool's bucket, its 429 holds the header pool too:
    the server's lockout is the bucket's, and a header request into it is an early retry (seen when the
    429 itself proved the pool shared: the chain took its next request through the header pool). The other
    way needs nothing: a shared query pool is retired and sends no more."""
    def refused(retry_after_s: float | None, limit: int | None, until: float) -> None:  # noqa: ARG001
        if probe.verdict == "shared":
            header.hold_until(until)

    query.on_refused = refused


def _both(first: LimitObserver, second: LimitObserver) -> LimitObserver:
    def observe(limit: int | None, remaining: int | None, reset: float | None) -> None:
        first(limit, remaining, reset)
        second(limit, remaining, reset)

    return observe


def open_budgets(settings: Settings, clients: list[ApiClient], stats: Stats, stop: threading.Event,
                 recently_used: frozenset[str] = frozenset()) -> list[Budget]:
    """Every budget STRATEGY allows, for every key: `auto` all three, `feed` the feed, `documented` both pools.
    A feed that stream-access refuses is left out (an error under `feed`). `recently_used`: budgets an earlier
    run spent moments ago, whose windows may still count its requests."""
    policy = RetryPolicy(max_attempts=settings.max_attempts)
    budgets: list[Budget] = []
    for index, (key, client) in enumerate(zip(settings.api_keys, clients, strict=True)):
        suffix = "" if index == 0 else f"#{index + 1}"
        key_id = key_fingerprint(key)

        def loop(name: str, pacer: Pacer | None = None, slow_start: bool = False,
                 answers: AnswerTimer | None = None) -> RetryLoop:
            throttle = Throttle(name, pacer=pacer, slow_start=slow_start, max_chains=settings.concurrency,
                                answers=answers or AnswerTimer(settings.request_timeout_s))
            return RetryLoop(throttle, policy, stats, stop)

        feed: Budget | None = None
        if settings.strategy != "documented":
            # stream-access has a bucket of its own: its answers must not teach the feed's throttle.
            slow_start = f"{FEED}@{key_id}" in recently_used
            feed = _open_feed(settings, client, loop("stream-access" + suffix),
                              loop(FEED + suffix, pacer=Pacer(), slow_start=slow_start), key_id)
            if feed is not None:
                budgets.append(feed)
        if settings.strategy == "feed":
            continue
        # One endpoint, one page time: the two pools' answers teach the same latency model.
        events_answers = AnswerTimer(settings.request_timeout_s)
        header_retry = loop(HEADER + suffix, answers=events_answers)
        query_retry = loop(QUERY + suffix, answers=events_answers)
        probe = QueryPoolProbe(restarted=f"{QUERY}@{key_id}" in recently_used,
                               on_shared=header_retry.throttle.limiter.cap_used)
        header = DocumentedSource(client, settings.page_size, _both(header_retry.throttle.observe,
                                                                     probe.header_answered))
        query = DocumentedSource(client, settings.page_size, _both(query_retry.throttle.observe,
                                                                    probe.query_answered), query_auth=True)
        budgets.append(Budget(HEADER + suffix, HEADER, header, header_retry, key_id=key_id, family=EVENTS + suffix))
        if feed is not None:  # the watch lives on in the two throttles' 429 hooks
            FeedShareWatch(feed.throttle, header_retry.throttle)
        share_lockouts(probe, query_retry.throttle, header_retry.throttle)
        budgets.append(Budget(QUERY + suffix, QUERY, ProbationSource(query, probe), query_retry, probe=probe,
                              key_id=key_id, family=EVENTS + suffix))
    return budgets


def _open_feed(settings: Settings, client: ApiClient, access: RetryLoop, retry: RetryLoop,
               key_id: str) -> Budget | None:
    try:
        grant = access.call(client.stream_access, "stream-access")
    except (AuthenticationFailed, RetriesExhausted):
        raise  # the documented endpoint would fail the same way
    except (StreamAccessDenied, FatalApiError) as exc:
        if settings.strategy == "feed":
            raise FatalApiError(f"strategy feed: stream-access refused: {exc}") from exc
        logger.warning("stream-access refused ({}); the documented /api/v1/events budgets carry the run", exc)
        return None
    logger.info("using the fast feed at {} (token valid {:.0f} s)", grant.endpoint, grant.expires_in_s)
    def renew() -> StreamGrant:
        try:
            return access.call(client.stream_access, "stream-access")
        except AuthenticationFailed:
            raise
        except FatalApiError as exc:  # the feed is gone, not the key: the other budgets go on
            raise StreamAccessDenied(f"stream token renewal: {exc}") from exc

    tokens = StreamTokens(client, grant, fetch=renew, stop=retry.stop)
    return Budget(retry.throttle.name, FEED, FeedSource(client, tokens, settings.page_size),
                  retry, key_id=key_id)
