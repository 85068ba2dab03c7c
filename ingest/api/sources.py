"""Where pages come from: the documented /api/v1/events chain, or the dashboard's fast feed.

Both answer `page(cursor, lo_ms, hi_ms)` with an Envelope. Only the feed can cut a time window on
the server (since/until); the documented endpoint ignores those, so it starts a bounded partition
with a built cursor instead. Either way the caller filters to [lo_ms, hi_ms) itself, so the result is
exact whatever the server's since/until semantics (inclusive or exclusive).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from loguru import logger

from ingest.api.client import ApiClient, Envelope, LimitObserver, StreamGrant
from ingest.errors import Stopped, StreamTokenInvalid

EVENTS_PATH = "/api/v1/events"


class Source(Protocol):
    """Where a budget's pages come from; `page` sends one request (its retry loop is the caller's)."""

    kind: str  # the endpoint whose cursors it issues: "documented" or "feed"
    windowed: bool  # True: it cuts [lo_ms, hi_ms) on the server (since/until)
    page_size: int  # events asked for per page

    def page(
        self, cursor: str | None, lo_ms: int | None, hi_ms: int | None, limit: int | None = None,
        read_timeout_s: float | None = None,
    ) -> Envelope: ...
# Renew a feed token this long before it expires (or at three quarters of a shorter life), so no
# request goes out with a dying token.
TOKEN_RENEW_BEFORE_S = 30.0
LOCK_SLICE_S = 0.25  # s; a chain waiting for the renewal in flight looks at `stop` this often


class DocumentedSource:
    """/api/v1/events with the key in the X-API-Key header, or as `?api_key=` (`query_auth`)."""

    kind = "documented"  # whose cursors it issues (the feed's may differ)
    windowed = False  # cannot bound a partition on the server

    def __init__(self, client: ApiClient, page_size: int, observe: LimitObserver | None = None, *,
                 query_auth: bool = False) -> None:
        self._client = client
        self.page_size = page_size
        self._observe = observe
        self._query_auth = query_auth

    def page(self, cursor: str | None, lo_ms: int | None, hi_ms: int | None, limit: int | None = None,
             read_timeout_s: float | None = None) -> Envelope:
        params: dict[str, object] = {"limit": limit or self.page_size}
        if cursor:
            params["cursor"] = cursor
        return self._client.events_page(EVENTS_PATH, params, observe=self._observe, query_auth=self._query_auth,
                                        keep_cut_off=True, read_timeout_s=read_timeout_s)


class StreamTokens:
    """The current feed token, renewed before expiry or when the server calls it invalid.

    A renewal is not a feed request: `fetch` sends it with stream-access's own retries (its bucket is not
    the feed's), so its 429s and 5xx neither pause the feed nor teach the feed's pacer. One renewal is in
    flight at a time; chains waiting for it still see `stop`.
    """

    def __init__(self, client: ApiClient, first: StreamGrant, clock: Callable[[], float] = time.monotonic, *,
                 fetch: Callable[[], StreamGrant] | None = None, stop: threading.Event | None = None) -> None:
        self._fetch = fetch or client.stream_access
        self._stop = stop or threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._grant = first
        self._renew_at = clock() + _renew_after(first)

    def current(self) -> StreamGrant:
        return self.renew(stale=None)

    def renew(self, stale: StreamGrant | None) -> StreamGrant:
        """Get a new token unless another thread already replaced `stale` (or, `stale` None, unless the
        current one is still fresh). Sends at most one renewal; raises Stopped while waiting for one."""
        while not self._lock.acquire(timeout=LOCK_SLICE_S):
            if self._stop.is_set():
                raise Stopped(0)
        try:
            if (self._grant is not stale) if stale is not None else self._clock() < self._renew_at:
                return self._grant
            # Holding the lock over this request is deliberate: concurrent fetchers must wait for the
            # one new token rather than each ask stream-access (which has its own rate limit).
            grant = self._fetch()
            self._grant, self._renew_at = grant, self._clock() + _renew_after(grant)
            logger.info("stream token renewed (valid {:.0f} s)", grant.expires_in_s)
            return grant
        finally:
            self._lock.release()


def _renew_after(grant: StreamGrant) -> float:
    return max(grant.expires_in_s - TOKEN_RENEW_BEFORE_S, grant.expires_in_s * 0.75)


class FeedSource:
    """The dashboard's fast feed: since/until windows on the server, a token renewed as it expires."""

    kind = "feed"
    windowed = True

    def __init__(self, client: ApiClient, tokens: StreamTokens, page_size: int) -> None:
        self._client = client
        self._tokens = tokens
        self.page_size = page_size

    def page(self, cursor: str | None, lo_ms: int | None, hi_ms: int | None, limit: int | None = None,
             read_timeout_s: float | None = None) -> Envelope:
        grant = self._tokens.current()
        params: dict[str, object] = {"limit": limit or self.page_size}
        if cursor:
            params["cursor"] = cursor
        if lo_ms is not None:
            params["since"] = lo_ms - 1  # one below: covers lo_ms whether the server's since is > or >=
        if hi_ms is not None:
            params["until"] = hi_ms  # events at hi_ms, if an inclusive server sends them, are filtered
        try:
            return self._client.events_page(grant.endpoint, params, headers={grant.header: grant.token},
                                            keep_cut_off=True, read_timeout_s=read_timeout_s)
        except StreamTokenInvalid:
            self._tokens.renew(stale=grant)
            raise
