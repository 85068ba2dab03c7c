"""The HTTP boundary: one request to the API, answered with parsed data or one of our errors.

Only this module knows about requests' exceptions and the API's status codes. It never retries:
the retry loop (retry_loop.py) goes through the budget's throttle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

from ingest.api import tolerant_json
from ingest.api.cursors import cursor_expiry_ms
from ingest.api.retry_policy import RetryPolicy
from ingest.api.server_clock import ServerClock
from ingest.api.truncated_body import whole_events_prefix
from ingest.errors import (
    AnswerTimedOut,
    AuthenticationFailed,
    CursorExpired,
    CursorRejected,
    FatalApiError,
    RateLimited,
    RetryableApiError,
    StreamAccessDenied,
    StreamTokenInvalid,
)

USER_AGENT = "datasync-ingest/0.1"
# stream-access answers only requests that look like the dashboard in a browser.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)
CONNECT_TIMEOUT_S = 10.0  # s; a healthy server accepts in milliseconds


N = TypeVar("N", int, float)
# Takes an answer's X-RateLimit-Limit, -Remaining and -Reset (None where absent).
LimitObserver = Callable[[int | None, int | None, float | None], None]


@dataclass(frozen=True)
class Envelope:
    """One parsed events envelope (documented endpoint or feed)."""

    events: list
    has_more: bool
    next_cursor: str | None
    total: int | None
    cursor_expires_in_s: float | None = None  # pagination.cursorExpiresIn: the next cursor's lifetime
    # A full page whose pagination object was damaged: its events are whole, its next cursor unknown. The
    # walker continues after its last event (see ChainWalker) rather than paying for the page again.
    pagination_damaged: bool = False
    truncated: bool = False  # the body was cut off mid-JSON: `events` are the whole ones before the cut


@dataclass(frozen=True)
class StreamGrant:
    endpoint: str  # a path on the API's own host, checked by stream_access()
    token: str = field(repr=False)
    header: str
    expires_in_s: float


class ApiClient:
    """Sends single requests with one requests.Session per thread; shared by all fetchers."""

    def __init__(
        self, base_url: str, api_key: str, timeout_s: float, policy: RetryPolicy,
        server_clock: ServerClock | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = (CONNECT_TIMEOUT_S, timeout_s)
        self._policy = policy
        self._local = threading.local()
        self._sessions: list[requests.Session] = []  # every thread's, so close() can close them all
        self._sessions_lock = threading.Lock()
        # Every answer sets it; built cursors take their expiry from it (build_cursor(now_ms=...)).
        self.server_clock = server_clock or ServerClock()

    def __repr__(self) -> str:
        return f"ApiClient({self.base_url!r})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # No urllib3 retries: every retry must go through the shared limiter (STYLE rule 4).
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update({"X-API-Key": self._api_key, "User-Agent": USER_AGENT})
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close every thread's session (their pooled connections); a thread that sends again gets a new one."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def request(
        self, method: str, path: str, *, params: Mapping | None = None, headers: Mapping | None = None,
        data: bytes | Iterable[bytes] | None = None, observe: LimitObserver | None = None,
        read_timeout_s: float | None = None,
    ) -> requests.Response:
        """Send one request; return a 2xx response or raise our error for anything else.

        `observe` gets the answer's X-RateLimit-Limit/-Remaining/-Reset (429s included), for the
        throttle of the budget that sent it. `read_timeout_s` replaces REQUEST_TIMEOUT for this request.
        Redirects are not followed: requests would resend X-API-Key (and a stream token) to any host.
        """
        try:
            response = self._session().request(
                method, self.base_url + path, params=params, headers=headers, data=data,
                timeout=self._timeout if read_timeout_s is None else (CONNECT_TIMEOUT_S, read_timeout_s),
                allow_redirects=False,
            )
            response.content  # noqa: B018 - read the body now so a cut connection surfaces here
        except requests.ReadTimeout as exc:
            raise AnswerTimedOut(f"timed out: {type(exc).__name__}") from exc
        except requests.Timeout as exc:
            raise RetryableApiError(f"timed out: {type(exc).__name__}") from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise RetryableApiError(f"connection failed: {type(exc).__name__}") from exc
        self.server_clock.observe_date(response.headers.get("Date"))
        if observe is not None:
            _observe_limits(response, observe)
        if response.status_code >= 300:
            raise self._error_for(response)
        return response

    def _error_for(self, response: requests.Response) -> Exception:
        status = response.status_code
        body = _json_or_none(response.content)
        code = body.get("code") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        detail = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
        if status < 400:
            return FatalApiError(
                f"the API redirected {response.request.path_url.split('?')[0]} to {_origin(response)} ({detail});"
                " redirects are not followed, so the key was not sent there: check API_BASE_URL"
            )
        if status == 429:
            # An HTTP-date is measured against the server's clock, so local clock skew adds no wait.
            retry_after = self._policy.retry_after(
                response.headers, wall=lambda: self.server_clock.now_ms() / 1000
            )
            rate_limit = body.get("rateLimit") if isinstance(body, dict) else None
            if retry_after is None and isinstance(rate_limit, dict):
                retry_after = self._policy.allowed_wait(_float(rate_limit.get("retryAfter")))
            limit = _number(rate_limit.get("limit"), int) if isinstance(rate_limit, dict) else None
            return RateLimited(detail, status, retry_after, limit)
        if status >= 500 or status in (408, 425):
            return RetryableApiError(detail, status)
        if code == "CURSOR_EXPIRED":
            return CursorExpired(detail)
        if code == "CURSOR_INVALID_FORMAT":
            return CursorRejected(detail)
        if code == "INVALID_STREAM_TOKEN":
            return StreamTokenInvalid(detail)
        if code == "DASHBOARD_REQUIRED":
            return StreamAccessDenied(detail)
        if status == 401:
            return AuthenticationFailed(f"the API rejected the key (HTTP 401): check API_KEY. {message or ''}".strip())
        if status == 403:
            return FatalApiError(f"the API refused access ({detail}): check API_KEY and its rights")
        if status == 404:
            return FatalApiError(f"{detail} at {response.request.path_url.split('?')[0]}: check API_BASE_URL")
        return FatalApiError(detail)

    def events_page(self, path: str, params: Mapping, headers: Mapping | None = None, *,
                    observe: LimitObserver | None = None, query_auth: bool = False,
                    keep_cut_off: bool = False, read_timeout_s: float | None = None) -> Envelope:
        """One page of events from the documented endpoint or the feed.

        `query_auth`: the key goes as `?api_key=` instead of the X-API-Key header (its own rate pool
        on some deployments of the API). `keep_cut_off`: a body cut off mid-JSON comes back with its
        whole events (for a chain, which goes on after them) instead of as a retryable error.
        """
        if query_auth:
            params = {**params, "api_key": self._api_key}
            headers = {**(headers or {}), "X-API-Key": None}  # None drops the session's header
        response = self.request("GET", path, params=params, headers=headers, observe=observe,
                                read_timeout_s=read_timeout_s)
        page = parse_envelope(response.content, asked=int_or_none(params.get("limit")), keep_cut_off=keep_cut_off)
        exp_ms = cursor_expiry_ms(page.next_cursor)
        if exp_ms is not None and page.cursor_expires_in_s is not None:
            self.server_clock.observe_cursor(exp_ms, page.cursor_expires_in_s)
        return page

    def stream_access(self) -> StreamGrant:
        """Ask for a feed token the way the dashboard does (contract §4)."""
        browser = {
            "User-Agent": BROWSER_USER_AGENT,
            "Origin": self.base_url,
            "Referer": self.base_url + "/",
            "Cookie": f"dashboard_api_key={self._api_key}",
            "Accept": "application/json",
        }
        response = self.request("POST", "/internal/dashboard/stream-access", headers=browser, data=b"")
        body = _json_or_none(response.content)
        grant = body.get("streamAccess") if isinstance(body, dict) else None
        if not isinstance(grant, dict):
            raise RetryableApiError("stream-access answer without a streamAccess object")
        try:
            granted = StreamGrant(
                endpoint=str(grant["endpoint"]),
                token=str(grant["token"]),
                header=str(grant.get("tokenHeader") or "X-Stream-Token"),
                expires_in_s=float(grant.get("expiresIn") or 300),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise RetryableApiError("stream-access answer without a usable streamAccess object") from exc
        if not is_own_path(granted.endpoint):
            # The key and the token go with every feed request: only ever to the host API_BASE_URL names.
            raise StreamAccessDenied(
                f"stream-access offered a feed at {granted.endpoint!r:.120}, not a path on {self.base_url}:"
                " refused, so neither the key nor the token is sent there"
            )
        return granted


def is_own_path(endpoint: str) -> bool:
    """True when `endpoint`, appended to the base URL, stays on the API's host and under its base path.

    Only an absolute path qualifies: not `//host/...` (scheme-relative) nor `http://...`, and never a
    text that, appended to the base URL, would turn its host into user info (`@host`); no backslash
    (some stacks read it as `/`), no `..` (even percent-encoded) that could climb out of a base path, no
    query or fragment, no space or control character.
    """
    decoded = unquote(endpoint)
    return (
        endpoint.startswith("/") and not endpoint.startswith("//")
        and not any(c in decoded for c in "\\?#") and ".." not in decoded
        and decoded.isprintable() and " " not in decoded
    )


def parse_envelope(content: bytes, asked: int | None = None, *, keep_cut_off: bool = False) -> Envelope:
    """Validate an events envelope; a damaged one (cut JSON, no pagination) is retryable, not the end.

    A body orjson refuses but the stdlib parser accepts (NaN, 1e400, a lone surrogate) is not damaged:
    its events are kept (see tolerant_json). Nor is a page whose JSON is whole and holds the `asked`
    number of events but whose pagination is damaged, or, with `keep_cut_off`, a body cut off after
    some whole events (see salvage): they come back marked `pagination_damaged` (the cut one also
    `truncated`), with `has_more` true. A question of one request (meta.total, is an event served) needs
    the whole body: without `keep_cut_off` a cut one is retryable.
    """
    truncated = False
    try:
        body = tolerant_json.loads(content)
    except ValueError as exc:
        body = whole_events_prefix(content) if keep_cut_off else None
        if body is None:
            raise RetryableApiError(f"invalid or truncated JSON body ({len(content)} bytes)") from exc
        truncated = True
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise RetryableApiError("response without a data list")
    meta = body.get("meta")
    total = int_or_none(meta.get("total")) if isinstance(meta, dict) else None
    pagination = body.get("pagination")
    damage = None
    if not isinstance(pagination, dict) or not isinstance(pagination.get("hasMore"), bool):
        damage = "response without a well-formed pagination object"
    elif pagination["hasMore"] and not (isinstance(pagination.get("nextCursor"), str) and pagination["nextCursor"]):
        damage = "hasMore is true but nextCursor is missing"
    if damage is not None:
        # A cut-off body goes on after its last whole event even when short: a page cut in its events was
        # not the end, and one cut after them costs the same request to go on as to fetch again.
        if truncated or (asked is not None and asked > 0 and len(body["data"]) == asked):
            return Envelope(body["data"], True, None, total, pagination_damaged=True, truncated=truncated)
        raise RetryableApiError(damage)
    assert isinstance(pagination, dict)
    next_cursor = pagination.get("nextCursor")
    return Envelope(
        body["data"], pagination["hasMore"], next_cursor if pagination["hasMore"] else None, total,
        _float(pagination.get("cursorExpiresIn")),
    )


def _observe_limits(response: requests.Response, observe: LimitObserver) -> None:
    headers = response.headers
    limit = int_or_none(headers.get("X-RateLimit-Limit"))
    remaining = int_or_none(headers.get("X-RateLimit-Remaining"))
    reset = _float(headers.get("X-RateLimit-Reset"))
    if limit is not None or remaining is not None or reset is not None:
        observe(limit, remaining, reset)


def _json_or_none(content: bytes) -> object:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _origin(response: requests.Response) -> str:
    location = response.headers.get("Location")
    if not location:
        return "an unnamed location (no Location header)"
    target = urlsplit(urljoin(response.url, location))
    return f"{target.scheme}://{target.hostname}" if target.hostname else repr(location[:120])


def int_or_none(value: object) -> int | None:
    """An int from a header or JSON value, or None when absent or not a number."""
    return _number(value, int)


def _float(value: object) -> float | None:
    return _number(value, float)


def _number(value: object, kind: Callable[[str | bytes | int | float], N]) -> N | None:
    if not isinstance(value, str | bytes | int | float) or isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return None
