"""Server-side throttles: fixed windows per (key, bucket), and the feed's bucket in one of three models.

Each answers a `Verdict`; none sleeps. Time is injected (`clock`, monotonic seconds). The feed's bucket
is a continuous token bucket, a fixed window, or a sliding (half-open) window (`feed_limiter`), because
the contract describes it only as "~40 requests/min, bursts of ~15" and a client must hold on each.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # whole seconds until the window (or lockout) ends, rounded up (down with `round_down`)
    early_retry: bool = False  # the request came inside a lockout, before Retry-After passed
    early_by_s: float = 0.0  # how long before that lockout's end (as it stood when the request came)


@dataclass
class _Window:
    start: float
    count: int = 0
    locked_until: float = 0.0  # set by the first 429 of a window


class FixedWindowLimiter:
    """`limit` requests per `window_s` per (key, bucket), the window opened by the first request.

    After a 429 the pair is locked out until the window ends; with `penalize` every request inside
    the lockout (an early retry) restarts a full window from its own arrival.
    """

    def __init__(self, window_s: float, penalize: bool, clock: Callable[[], float] = time.monotonic, *,
                 round_down: bool = False) -> None:
        self._whole = _floor if round_down else _ceil
        self.window_s = window_s
        self.penalize = penalize
        self._clock = clock
        self._state: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, bucket: str, limit: int) -> Verdict:
        """Count one request of `key` on `bucket` (limit > 0) and say whether it may proceed."""
        now = self._clock()
        with self._lock:
            st = self._state.get((key, bucket))
            if st is not None and st.locked_until:
                if now < st.locked_until:
                    early_by = st.locked_until - now
                    if self.penalize:
                        st.locked_until = now + self.window_s
                    return Verdict(False, limit, 0, self._whole(st.locked_until - now), early_retry=True,
                                   early_by_s=early_by)
                st = None  # lockout over: the next request opens a fresh window
            if st is None or now >= st.start + self.window_s:
                st = _Window(start=now)
                self._state[(key, bucket)] = st
            if st.count < limit:
                st.count += 1
                return Verdict(True, limit, limit - st.count, self._whole(st.start + self.window_s - now))
            st.locked_until = st.start + self.window_s
            return Verdict(False, limit, 0, self._whole(st.locked_until - now))


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    locked_until: float = 0.0


class TokenBucketLimiter:
    """Per key: `rpm` requests per minute with bursts of `burst`; 429 when no whole token is left.

    With `penalize`, a refused request still spends a token (the debt is capped at `burst`), so
    hammering through a 429 storm keeps the storm going.
    """

    def __init__(self, rpm: float, burst: int, penalize: bool,
                 clock: Callable[[], float] = time.monotonic, *, round_down: bool = False) -> None:
        self._whole = _floor if round_down else _ceil
        self.rate = rpm / 60.0
        self.burst = max(1, burst)
        self.penalize = penalize
        self._clock = clock
        self._state: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> Verdict:
        now = self._clock()
        with self._lock:
            b = self._state.get(key)
            if b is None:
                b = self._state[key] = _Bucket(tokens=float(self.burst), stamp=now)
            b.tokens = min(float(self.burst), b.tokens + (now - b.stamp) * self.rate)
            b.stamp = now
            early = now < b.locked_until
            early_by = b.locked_until - now if early else 0.0
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return Verdict(True, self.burst, int(b.tokens), self._whole((1.0 - b.tokens % 1.0) / self.rate))
            if self.penalize and early:
                b.tokens = max(-float(self.burst), b.tokens - 1.0)
            wait = (1.0 - b.tokens) / self.rate
            b.locked_until = now + wait
            return Verdict(False, self.burst, 0, self._whole(wait), early_retry=early, early_by_s=early_by)


@dataclass
class _Log:
    granted: deque[float] = field(default_factory=deque)  # arrival of each grant still inside the window
    locked_until: float = 0.0


class SlidingWindowLimiter:
    """Per key: at most `limit` grants in any `window_s` (the half-open window (now - window_s, now]).

    A 429 locks the key out until the oldest grant leaves the window; with `penalize` every request
    inside that lockout (an early retry) restarts a full window from its own arrival.
    """

    def __init__(self, limit: int, window_s: float, penalize: bool,
                 clock: Callable[[], float] = time.monotonic, *, round_down: bool = False) -> None:
        self._whole = _floor if round_down else _ceil
        self.limit = max(1, limit)
        self.window_s = window_s
        self.penalize = penalize
        self._clock = clock
        self._state: dict[str, _Log] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> Verdict:
        now = self._clock()
        with self._lock:
            log = self._state.setdefault(key, _Log())
            while log.granted and log.granted[0] <= now - self.window_s:
                log.granted.popleft()
            early = now < log.locked_until
            early_by = log.locked_until - now if early else 0.0
            if early and self.penalize:
                log.locked_until = now + self.window_s
                return Verdict(False, self.limit, 0, self._whole(self.window_s), early_retry=True, early_by_s=early_by)
            if len(log.granted) < self.limit:
                log.granted.append(now)
                oldest = log.granted[0]
                return Verdict(True, self.limit, self.limit - len(log.granted),
                               self._whole(oldest + self.window_s - now))
            log.locked_until = log.granted[0] + self.window_s
            return Verdict(False, self.limit, 0, self._whole(log.locked_until - now), early_retry=early,
                           early_by_s=early_by)


def feed_limiter(model: str, rpm: float, burst: int, window_s: float, penalize: bool,
                 clock: Callable[[], float] = time.monotonic, *, round_down: bool = False) -> Callable[[str], Verdict]:
    """The feed's bucket as `hit(key) -> Verdict`: `token` (rpm, burst), `fixed` or `sliding` (rpm × window_s
    / 60 requests per `window_s`); `penalize` applies each model's penalty for a request inside a lockout."""
    per_window = int(rpm * window_s / 60.0 + 1e-9)
    if model == "fixed":
        return partial(FixedWindowLimiter(window_s, penalize, clock, round_down=round_down).hit, bucket="feed",
                       limit=per_window)
    if model == "sliding":
        return SlidingWindowLimiter(per_window, window_s, penalize, clock, round_down=round_down).hit
    return TokenBucketLimiter(rpm, burst, penalize, clock, round_down=round_down).hit


def _ceil(seconds: float) -> int:
    return max(1, math.ceil(seconds - 1e-9))


def _floor(seconds: float) -> int:
    """What a server that truncates says: the window or lockout may last up to a second longer."""
    return max(0, math.floor(seconds + 1e-9))
