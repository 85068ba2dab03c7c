"""The API's behaviour, HTTP-free: a `Request` in, a `Response` out (server.py does the sockets).

Order of checks for an API request: route → auth (401) → rate limit (429, consumes the bucket) →
transport chaos (reset, 5xx, slow, truncate) → request validation (400) → answer. So a 5xx or a
400 still costs a request of the bucket, as on the live API.

Feed window: `since` is an inclusive lower bound (ts >= since) and `until` an exclusive upper
bound (ts < until), both epoch ms, so day partitions [d, d+1) tile the data without overlap.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import orjson

from . import cursor as cursors
from .bounds import bounds
from .chaos import Chaos, Plan
from .config import SimConfig
from .dataset import R_ID, R_TS, R_TYPE, TYPES, Dataset, View, event_ms
from .expected import Expected
from .limits import FixedWindowLimiter, Verdict, feed_limiter
from .pages import EPOCH_MS, MIXED, envelope, event_items, poison
from .readahead import ReadAhead
from .stats import Stats
from .submissions import MAX_SUBMISSIONS, SubmissionError, SubmissionStore, answer, parse_ids
from .timefmt import iso_ms

KEY_RE = re.compile(r"ds_[0-9a-f]{32}")
BULK_MAX = 100
CACHE_KEYS_MAX = 10_000  # remembered URLs for X-Cache: HIT
SCAN_CHUNK = 4096  # positions per step of a type-filtered scan
JSON = "application/json; charset=utf-8"
MANIFEST = orjson.dumps({
    "name": "DataSync Analytics API", "version": "v1",
    "endpoints": {"events": "/api/v1/events", "sessions": "/api/v1/sessions", "metrics": "/api/v1/metrics"},
    "authentication": {"method": "API Key", "header": "X-API-Key"},
})
STATUS_TEXT = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Temporarily Unavailable",
               504: "Gateway Time-out"}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    @classmethod
    def build(cls, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Request:
        path, _, qs = target.partition("?")
        query = {k: v[0] for k, v in parse_qs(qs, keep_blank_values=True).items()}
        return cls(method, path, query, {k.lower(): v for k, v in headers.items()}, body)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON
    endpoint: str = "not_found"
    events: int = 0  # events in the body, for stats
    delay: float = 0.0  # seconds to sleep before answering (latency, slow chaos); no lock held
    reset: bool = False  # close the connection without answering
    truncate_to: int | None = None  # send only this many body bytes (Content-Length matches)
    head_only: bool = False


def error(status: int, error_text: str, message: str, code: str, endpoint: str, **extra) -> Response:
    body = {"error": error_text, "message": message, "code": code, **extra}
    return Response(status, orjson.dumps(body), endpoint=endpoint)


def alb_error(status: int, endpoint: str) -> Response:
    text = f"{status} {STATUS_TEXT[status]}"
    body = (f"<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n"
            f"<center><h1>{text}</h1></center>\r\n</body>\r\n</html>\r\n")
    return Response(status, body.encode(), [("Server", "awselb/2.0")], "text/html", endpoint=endpoint)


class _Refusal(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


@dataclass(frozen=True)
class _Auth:
    key: str
    via_query: bool


class App:
    """All endpoint behaviour of one simulated API instance."""

    def __init__(self, cfg: SimConfig, clock: Callable[[], float] | None = None,
                 wall_ms: Callable[[], int] | None = None) -> None:
        """`clock` (monotonic s) and `wall_ms` (epoch ms) default to the real clocks."""
        self.cfg = cfg
        self.ds = Dataset(cfg)
        self.stats = Stats()
        self.chaos = Chaos(cfg)
        self.expected = Expected()
        self.submissions = SubmissionStore()
        self.issued = cursors.IssuedCursors()
        self.readahead = ReadAhead()
        clock = clock or time.monotonic
        self._clock = clock
        self._wall_ms = wall_ms or (lambda: int(time.time() * 1000))
        self._windows = FixedWindowLimiter(cfg.window_s, cfg.penalize_early_retries, clock,
                                           round_down=cfg.round_reset_down)
        self._feed_bucket = feed_limiter(cfg.feed_model, cfg.feed_rpm, cfg.feed_burst, cfg.feed_window_s,
                                         cfg.penalize_early_retries, clock, round_down=cfg.round_reset_down)
        self._counter = itertools.count()
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (key, expiry monotonic)
        self._first_use: dict[str, tuple[float, int]] = {}  # key -> (monotonic, wall ms)
        self._seen_urls: dict[str, float] = {}
        self._keys = frozenset(cfg.api_keys())  # empty: any well-formed key is valid
        self._revoked: frozenset[str] = frozenset()

    def revoke_key(self, key: str) -> None:
        """Refuse `key` (401) from now on; with no configured keys, every other well-formed key stays valid."""
        with self._lock:
            self._revoked = self._revoked | {key}

    # ---- routing ------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/__sim/"):
            return self._introspect(req, path)
        try:
            return self._route(req, path)
        except _Refusal as refusal:
            return refusal.response

    def _route(self, req: Request, path: str) -> Response:
        m = req.method
        if path == "/api/v1" and m in ("GET", "HEAD"):
            return Response(200, MANIFEST, endpoint="manifest", head_only=m == "HEAD")
        if path == self.cfg.feed_path.rstrip("/") and m == "GET":
            return self._feed(req)
        if path == "/api/v1/events" and m in ("GET", "HEAD"):
            return self._events(req)
        if path == "/api/v1/events/bulk" and m == "POST":
            return self._bulk(req)
        if path.startswith("/api/v1/events/") and "/" not in path[15:] and m in ("GET", "HEAD"):
            return self._event(req, path[15:])
        if path == "/api/v1/sessions" and m in ("GET", "HEAD"):
            return self._sessions(req)
        if path == "/api/v1/metrics" and m in ("GET", "HEAD"):
            return self._metrics(req)
        if path == "/internal/dashboard/stream-access" and m == "POST":
            return self._stream_access(req)
        if path == "/api/v1/submissions" and m in ("GET", "POST"):
            return self._submissions(req)
        return error(404, "Not Found", "The requested endpoint does not exist", "ENDPOINT_NOT_FOUND", "not_found")

    # ---- auth, limits, chaos ------------------------------------------------------------------
    def _auth(self, req: Request, endpoint: str) -> _Auth:
        key = req.headers.get("x-api-key")
        via_query = False
        if not key and "api_key" in req.query:
            key, via_query = req.query["api_key"], True
        if not key:
            raise _Refusal(error(401, "Unauthorized", "API key is required. Provide it in the X-API-Key header.",
                                 "MISSING_API_KEY", endpoint))
        valid = key not in self._revoked and (key in self._keys if self._keys else KEY_RE.fullmatch(key) is not None)
        if not valid:
            raise _Refusal(error(401, "Unauthorized", "Invalid API key", "INVALID_API_KEY", endpoint))
        now = self._clock()
        with self._lock:
            first = self._first_use.setdefault(key, (now, self._wall_ms()))
        if self.cfg.key_ttl_s and now - first[0] > self.cfg.key_ttl_s:
            raise _Refusal(error(401, "Unauthorized", "API key has expired", "API_KEY_EXPIRED", endpoint))
        return _Auth(key, via_query)

    def _limit(self, auth: _Auth, bucket: str, limit: int, endpoint: str,
               headers: bool = True) -> list[tuple[str, str]]:
        """Count the request on its bucket; returns the rate headers or raises a 429 refusal."""
        if auth.via_query and self.cfg.query_key_limit:
            limit = min(limit, self.cfg.query_key_limit) if limit else self.cfg.query_key_limit
            if not self.cfg.query_key_shares_bucket:
                bucket += ":query"
        if not limit:
            return []
        verdict = self._windows.hit(auth.key, bucket, limit)
        rate = [("X-RateLimit-Limit", str(limit)), ("X-RateLimit-Remaining", str(verdict.remaining)),
                ("X-RateLimit-Reset", str(verdict.reset))] if headers else []
        if not verdict.allowed:
            raise _Refusal(self._too_many(verdict, endpoint, rate))
        return rate

    def _too_many(self, verdict: Verdict, endpoint: str, rate: list[tuple[str, str]]) -> Response:
        if verdict.early_retry:
            self.stats.early_retry(endpoint, verdict.early_by_s)
        s = verdict.reset
        resp = error(429, "Too Many Requests", f"Rate limit exceeded. Try again in {s} seconds.",
                     "RATE_LIMIT_EXCEEDED", endpoint,
                     rateLimit={"limit": verdict.limit, "remaining": 0, "reset": s, "retryAfter": s})
        resp.headers = [*rate, ("Retry-After", str(s))]
        return resp

    def _plan(self, endpoint: str, data: bool) -> Plan:
        """Draw this request's chaos; raises the refusal when it is a reset or a 5xx."""
        plan = self.chaos.plan(next(self._counter), data)
        if plan.reset:
            self.stats.chaos_applied("reset")
            raise _Refusal(Response(0, endpoint=endpoint, reset=True))
        if plan.status_5xx:
            self.stats.chaos_applied("5xx")
            status = plan.status_5xx
            if status == 500:
                raise _Refusal(error(500, "Internal Server Error", "An unexpected error occurred",
                                     "INTERNAL_ERROR", endpoint))
            raise _Refusal(alb_error(status, endpoint))
        return plan

    def _finish(self, resp: Response, plan: Plan, latency_events: int) -> Response:
        cfg = self.cfg
        resp.delay = (cfg.latency_base_ms + cfg.latency_ms_per_event * latency_events) / 1000.0
        if plan.slow:
            self.stats.chaos_applied("slow")
            resp.delay += cfg.slow_seconds
        if plan.truncate_at is not None and resp.status == 200 and not resp.head_only:
            self.stats.chaos_applied("truncate")
            resp.truncate_to = int(len(resp.body) * plan.truncate_at)
            self.stats.cut((1.0 - plan.truncate_at) * latency_events / cfg.max_limit)
        return resp

    # ---- event listings -----------------------------------------------------------------------
    def _limit_param(self, req: Request) -> int:
        try:
            limit = int(req.query.get("limit", ""))
        except ValueError:
            return self.cfg.default_limit
        return self.cfg.default_limit if limit < 1 else min(limit, self.cfg.max_limit)

    def _cursor(self, req: Request, view: View, endpoint: str) -> int:
        """Position where the page starts: 0 without a cursor, else just after the cursor's (ts, id)."""
        text = req.query.get("cursor")
        if not text:
            return 0
        try:
            cur = cursors.decode(text, self._wall_ms())
            if self.cfg.reject_forged_cursors and text.strip().replace(" ", "+") not in self.issued:
                raise cursors.CursorError("CURSOR_INVALID_FORMAT", "Invalid cursor format")
        except cursors.CursorError as exc:
            if exc.code == "CURSOR_INVALID_FORMAT" and self.cfg.bad_cursor_status == 502:
                raise _Refusal(alb_error(502, endpoint)) from None
            raise _Refusal(error(400, "Bad Request", exc.message, exc.code, endpoint)) from None
        return view.seek(cur.ts, cur.id)

    def _pagination(self, limit: int, last: tuple | None, has_more: bool) -> dict:
        ttl = int(self.cfg.cursor_ttl_s)
        next_cursor = None
        if has_more and last is not None:
            next_cursor = cursors.encode(last[R_TS], last[R_ID], self._wall_ms() + int(self.cfg.cursor_ttl_s * 1000))
            if self.cfg.reject_forged_cursors:
                self.issued.add(next_cursor)
            self.stats.add("cursors_issued")
        return {"limit": limit, "hasMore": has_more, "nextCursor": next_cursor, "cursorExpiresIn": ttl}

    def _page(self, view: View, start: int, limit: int, req: Request, stop: int) -> tuple[list[tuple], bool]:
        """The records of one page from position `start` (before `stop`), and whether more follow.

        Unfiltered pages are a slice. A `sessionId` filter looks only at that session's ~50
        positions; a `type` filter alone scans forward from `start` (O(N) at worst, bounded memory).
        """
        session_id = req.query.get("sessionId")
        etype = req.query.get("type")
        if session_id is None and etype is None:
            end = min(start + limit, stop)
            if end < stop:
                self.readahead.hint(view, end, min(end + limit, stop))
            return view.records(start, end), end < stop
        if etype is not None and etype not in TYPES:
            return [], False
        kind = TYPES.index(etype) if etype is not None else None
        if session_id is not None:
            si = self.ds.session_index(session_id)
            positions = [p for p in view.session_positions(si) if start <= p < stop] if si is not None else []
            matches = [r for r in map(view.record, positions) if kind is None or r[R_TYPE] == kind]
            return matches[:limit], len(matches) > limit
        matches = []
        p = start
        while p < stop and len(matches) <= limit:
            matches += [r for r in view.records(p, min(p + SCAN_CHUNK, stop)) if r[R_TYPE] == kind]
            p += SCAN_CHUNK
        return matches[:limit], len(matches) > limit

    def _listing(self, req: Request, view: View, endpoint: str, form: str, plan: Plan,
                 start: int, stop: int | None, headers: list[tuple[str, str]]) -> Response:
        limit = self._limit_param(req)
        recs, has_more = self._page(view, start, limit, req, view.total if stop is None else stop)
        shown = recs
        filtered = "sessionId" in req.query or "type" in req.query
        if plan.replay and not filtered and start > 0:
            k = min(plan.replay, start)
            shown = view.records(start - k, start) + recs
            self.stats.chaos_applied("replay")
        items, missing = event_items(shown, form, plan, self.cfg.odd_timestamps)
        if self.cfg.poison_rate and recs and poison(items, recs[0][R_ID], self.cfg.poison_rate, self.cfg.seed):
            self.stats.chaos_applied("poison")
        request_id = str(uuid.uuid4())
        pagination = self._pagination(limit, recs[-1] if recs else None, has_more)
        if plan.no_pagination:
            self.stats.chaos_applied("no_pagination")
        if plan.ts_variant and shown:
            self.stats.chaos_applied("ts_variant")
        body = envelope(items, pagination, plan.no_pagination,
                        {"total": view.total, "returned": len(items), "requestId": request_id})
        hdrs = [("X-Request-ID", request_id), *headers]
        if missing:
            self.stats.chaos_applied("missing_fields")
            hdrs.append(("X-Chaos-Applied", "missingFields"))
        resp = Response(200, body, hdrs, endpoint=endpoint, events=len(items), head_only=req.method == "HEAD")
        return self._finish(resp, plan, len(items))

    def _events(self, req: Request) -> Response:
        auth = self._auth(req, "events")
        # /__sim/stats counts the ?api_key= pool apart, so tests can see which budget was spent.
        label = "events_query" if auth.via_query else "events"
        rate = self._limit(auth, "events", self.cfg.events_limit, label)
        plan = self._plan("events", data=True)
        view = self.ds.snapshot()
        try:
            start = self._cursor(req, view, label)
        except _Refusal as refusal:
            refusal.response.headers[:0] = rate
            raise
        resp = self._listing(req, view, label, MIXED, plan, start, None, rate)
        resp.headers += self._cache_headers(req, resp)
        return resp

    def _cache_headers(self, req: Request, resp: Response) -> list[tuple[str, str]]:
        url = req.path + "?" + "&".join(f"{k}={v}" for k, v in sorted(req.query.items()) if k != "api_key")
        now = self._clock()
        with self._lock:
            seen = self._seen_urls.get(url)
            hit = seen is not None and now - seen < self.cfg.cache_ttl_s
            if not hit:
                if len(self._seen_urls) >= CACHE_KEYS_MAX:
                    self._seen_urls.clear()
                self._seen_urls[url] = now
        tag = hashlib.blake2b(f"{url}:{resp.events}:{len(resp.body)}".encode(), digest_size=16).hexdigest()
        return [("X-Cache", "HIT" if hit else "MISS"), ("X-Cache-TTL", str(int(self.cfg.cache_ttl_s))),
                ("ETag", f'W/"{len(resp.body):x}-{tag}"')]

    def _feed(self, req: Request) -> Response:
        auth = self._auth(req, "feed")
        token = req.headers.get("x-stream-token", "")
        now = self._clock()
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[0] != auth.key or now >= entry[1]:
            raise _Refusal(error(403, "Forbidden", "Invalid or expired stream token", "INVALID_STREAM_TOKEN", "feed"))
        mode = self.cfg.feed_throttle
        if mode == "soft":
            verdict = self._feed_bucket(auth.key)
            if not verdict.allowed:
                raise _Refusal(self._too_many(verdict, "feed", []))
        elif mode == "shared":
            self._limit(auth, "events", self.cfg.events_limit, "feed", headers=False)
        plan = self._plan("feed", data=True)
        view = self.ds.snapshot()
        since, until = self._int_param(req, "since"), self._int_param(req, "until")
        start = self._cursor(req, view, "feed")
        if until is not None:
            start = max(start, view.seek_before(until))
        stop = view.seek_before(since) if since is not None else view.total
        return self._listing(req, view, "feed", EPOCH_MS, plan, start, max(start, stop), [])

    @staticmethod
    def _int_param(req: Request, name: str) -> int | None:
        value = req.query.get(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise _Refusal(error(400, "Bad Request", f"Invalid '{name}' parameter: expected epoch milliseconds",
                                 "INVALID_PARAMETER", "feed")) from None

    # ---- other endpoints ----------------------------------------------------------------------
    def _event(self, req: Request, eid: str) -> Response:
        auth = self._auth(req, "event")
        rate = self._limit(auth, "events", self.cfg.events_limit, "event")
        plan = self._plan("event", data=False)
        view = self.ds.snapshot()
        key = self.ds.key_of_id(eid)
        pos = view.position_of_key(key) if key is not None else None
        if pos is None:
            resp = error(404, "Not Found", f"Event with id '{eid}' not found", "EVENT_NOT_FOUND", "event")
            resp.headers = rate
            return resp
        rec = view.record(pos)
        body = b'{"data":' + event_ms(rec) + b"}"
        resp = Response(200, body, [("X-Request-ID", str(uuid.uuid4())), *rate], endpoint="event", events=1,
                        head_only=req.method == "HEAD")
        return self._finish(resp, plan, 1)

    def _bulk(self, req: Request) -> Response:
        auth = self._auth(req, "bulk")
        rate = self._limit(auth, "bulk", self.cfg.bulk_limit, "bulk")
        plan = self._plan("bulk", data=False)
        if random.Random(plan.rng_seed * 17 + 3).random() < self.cfg.p_bulk_500:
            resp = error(500, "Internal Server Error", "Bulk lookup failed", "INTERNAL_ERROR", "bulk")
            resp.headers = rate
            return resp
        try:
            ids = orjson.loads(req.body).get("ids")
        except (orjson.JSONDecodeError, AttributeError):
            ids = None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            resp = error(400, "Bad Request", "Body must be {\"ids\": [...]}", "INVALID_REQUEST", "bulk")
        elif len(ids) > BULK_MAX:
            resp = error(400, "Bad Request", f"At most {BULK_MAX} ids per request", "TOO_MANY_IDS", "bulk")
        else:
            view = self.ds.snapshot()
            found = []
            for eid in ids:
                key = self.ds.key_of_id(eid)
                pos = view.position_of_key(key) if key is not None else None
                if pos is not None:
                    found.append(event_ms(view.record(pos)))
            meta = orjson.dumps({"requested": len(ids), "found": len(found), "requestId": str(uuid.uuid4())})
            resp = Response(200, b'{"data":[' + b",".join(found) + b'],"meta":' + meta + b"}",
                            endpoint="bulk", events=len(found))
        resp.headers = rate + resp.headers
        return self._finish(resp, plan, 0)

    def _sessions(self, req: Request) -> Response:
        auth = self._auth(req, "sessions")
        rate = self._limit(auth, "sessions", self.cfg.sessions_limit, "sessions")
        plan = self._plan("sessions", data=False)
        view = self.ds.snapshot()
        indexes = view.session_indexes()
        start = 0
        text = req.query.get("cursor")
        if text:
            try:
                cur = cursors.decode(text, self._wall_ms())
            except cursors.CursorError as exc:
                return error(400, "Bad Request", exc.message, exc.code, "sessions")
            si = self.ds.session_index(cur.id)
            if si is None:
                return error(400, "Bad Request", "Invalid cursor format", "CURSOR_INVALID_FORMAT", "sessions")
            start = bisect.bisect_right(indexes, si)
        limit = self._limit_param(req)
        page = indexes[start:start + limit]
        data = []
        for si in page:
            s = self.ds.session(si)
            data.append({"id": s.id, "userId": s.user_id, "deviceType": s.device, "browser": s.browser,
                         "eventCount": len(view.session_positions(si))})
        has_more = start + limit < len(indexes)
        next_cursor = None
        if has_more and page:
            next_cursor = cursors.encode(page[-1], self.ds.session(page[-1]).id,
                                         self._wall_ms() + int(self.cfg.cursor_ttl_s * 1000))
        body = orjson.dumps({
            "data": data,
            "pagination": {"limit": limit, "hasMore": has_more, "nextCursor": next_cursor,
                           "cursorExpiresIn": int(self.cfg.cursor_ttl_s)},
            "meta": {"total": len(indexes), "returned": len(data), "requestId": str(uuid.uuid4())},
        })
        resp = Response(200, body, rate, endpoint="sessions", head_only=req.method == "HEAD")
        return self._finish(resp, plan, 0)

    def _metrics(self, req: Request) -> Response:
        auth = self._auth(req, "metrics")
        rate = self._limit(auth, "metrics", self.cfg.metrics_limit, "metrics")
        plan = self._plan("metrics", data=False)
        limit = self._limit_param(req)
        body = orjson.dumps({
            "data": [],
            "pagination": {"limit": limit, "hasMore": False, "nextCursor": None,
                           "cursorExpiresIn": int(self.cfg.cursor_ttl_s)},
            "meta": {"total": 0, "returned": 0, "requestId": str(uuid.uuid4())},
        })
        return self._finish(Response(200, body, rate, endpoint="metrics", head_only=req.method == "HEAD"), plan, 0)

    def _stream_access(self, req: Request) -> Response:
        auth = self._auth(req, "stream_access")
        if not self.cfg.stream_access_enabled or "Mozilla/" not in req.headers.get("user-agent", ""):
            return error(403, "Forbidden", "Stream access is only available from the dashboard",
                         "DASHBOARD_REQUIRED", "stream_access")
        self._limit(auth, "stream_access", self.cfg.stream_access_limit, "stream_access", headers=False)
        plan = self._plan("stream_access", data=False)
        token = secrets.token_hex(32)
        now = self._clock()
        with self._lock:
            self._tokens = {t: v for t, v in self._tokens.items() if v[1] > now}
            self._tokens[token] = (auth.key, now + self.cfg.token_ttl_s)
        self.stats.add("tokens_issued")
        body = orjson.dumps({
            "streamAccess": {"endpoint": self.cfg.feed_path, "token": token,
                             "expiresIn": int(self.cfg.token_ttl_s), "tokenHeader": "X-Stream-Token"},
            "meta": {"generatedAt": iso_ms(self._wall_ms()),
                     "note": "Token is required in X-Stream-Token header for feed access"},
        })
        return self._finish(Response(200, body, endpoint="stream_access"), plan, 0)

    def _submissions(self, req: Request) -> Response:
        auth = self._auth(req, "submissions")
        if req.method == "GET":
            subs = self.submissions.of_key(auth.key)
            body = orjson.dumps({"success": True, "data": [s.public() for s in subs],
                                 "meta": {"total": len(subs), "remainingSubmissions": MAX_SUBMISSIONS - len(subs)}})
            return Response(200, body, endpoint="submissions")
        try:
            lines, repo = parse_ids(req.body, req.headers.get("content-type", "text/plain"),
                                    req.query.get("github_repo"))
            with self._lock:
                first_wall = self._first_use[auth.key][1]
            sub = self.submissions.submit(auth.key, lines, repo, first_wall)
        except SubmissionError as exc:
            return error(exc.status, "Forbidden" if exc.status == 403 else "Bad Request", exc.message, exc.code,
                         "submissions")
        return Response(200, orjson.dumps(answer(sub)), endpoint="submissions")

    # ---- introspection ------------------------------------------------------------------------
    def release_late(self) -> dict:
        """Release every held-back event (late and new) at once; the answer of POST /__sim/release-late."""
        late, new = self.ds.release()
        return {"released": late + new, "late": late, "new": new, "total": self.ds.snapshot().total}

    def _introspect(self, req: Request, path: str) -> Response:
        if path == "/__sim/stats":
            return Response(200, orjson.dumps(self.stats.snapshot()), endpoint="__sim")
        if path == "/__sim/expected":
            return Response(200, orjson.dumps(self.expected.get(self.ds.snapshot())), endpoint="__sim")
        if path == "/__sim/bounds":
            chaos = self.stats.snapshot()["chaos"]
            failed = sum(chaos.get(knob, 0) for knob in ("5xx", "reset", "slow"))
            cut = self.stats.snapshot()["cut_pages"]
            return Response(200, orjson.dumps(bounds(self.cfg, self.ds.snapshot().total, failed, cut)),
                            endpoint="__sim")
        if path == "/__sim/grow" and req.method == "POST":
            try:
                count = int(req.query.get("count", "0"))
                total = self.ds.grow(count)
            except ValueError:
                return error(400, "Bad Request", "count must be a non-negative integer", "INVALID_PARAMETER", "__sim")
            return Response(200, orjson.dumps({"added": count, "total": total}), endpoint="__sim")
        if path == "/__sim/release-late" and req.method == "POST":
            return Response(200, orjson.dumps(self.release_late()), endpoint="__sim")
        if path == "/__sim/submissions":
            exp = self.expected.get(self.ds.snapshot())
            body = [{"key": s.key[:6] + "…", "number": s.number, "eventCount": s.event_count,
                     "validCount": s.valid_count, "sha256": s.sha256,
                     "matchesExpected": s.sha256 == exp["sha256"] and s.event_count == exp["count"]}
                    for s in self.submissions.all()]
            return Response(200, orjson.dumps(body), endpoint="__sim")
        if path == "/__sim/config":
            return Response(200, orjson.dumps({k: v for k, v in vars(self.cfg).items() if k != "api_key"}),
                            endpoint="__sim")
        return error(404, "Not Found", "The requested endpoint does not exist", "ENDPOINT_NOT_FOUND", "__sim")

