"""Periodic progress lines: stored, percent of meta.total, rate, ETA, 429s, limiter wait, queue depth."""

from __future__ import annotations

import queue
import time

from loguru import logger

from ingest.limiter import RateLimiter
from ingest.stats import Stats


class Progress:
    def __init__(self, stats: Stats, limiter: RateLimiter, pages: queue.Queue, interval_s: float,
                 already_stored: int, clock=time.monotonic) -> None:
        self._stats = stats
        self._limiter = limiter
        self._pages = pages
        self._interval = interval_s
        self._already = already_stored
        self._clock = clock
        self._next = clock() + interval_s

    def maybe_log(self) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._interval
        logger.info(self.line())

    def line(self) -> str:
        s = self._stats
        in_table = self._already + s.stored
        rate = s.rate()
        total = s.total_hint
        if total:
            left = max(0, total - in_table)
            eta = f"{left / rate:.0f} s" if rate > 0 else "?"
            share = f"{100 * in_table / total:.1f}% of {total:,}"
        else:
            eta, share = "?", "total unknown"
        return (
            f"progress: {in_table:,} events stored ({share}), {rate:,.0f} events/s, ETA {eta},"
            f" 429s {s.throttled}, retries {s.retries}, limiter wait {self._limiter.waited_seconds:.1f} s,"
            f" queue {self._pages.qsize()}"
        )
