"""Counters served at `/__sim/stats`; thread-safe increments."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

EARLY_KEPT = 50  # early arrivals listed one by one in the snapshot (the first ones)


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.rate_limited = 0
        self.early_by_endpoint: dict[str, int] = defaultdict(int)  # the same requests, by where they went
        self.early_list: list[tuple[str, float, float]] = []  # (endpoint, s since start, s before the lockout's end)
        self._started = time.monotonic()
        self.bytes_sent = 0
        self.events_served = 0
        self.chaos: dict[str, int] = defaultdict(int)
        self.tokens_issued = 0
        self.cursors_issued = 0
        self.cut_pages = 0.0  # pages' worth of events that bodies cut mid-JSON did not deliver

    def record(self, endpoint: str, status: int | str, sent: int = 0, events: int = 0) -> None:
        """One answered request: `status` is the HTTP status or "reset" for a dropped connection."""
        with self._lock:
            self.requests[endpoint][str(status)] += 1
            self.bytes_sent += sent
            self.events_served += events
            if status == 429:
                self.rate_limited += 1

    def add(self, name: str, n: int = 1) -> None:
        """Increment a top-level counter (tokens_issued, cursors_issued)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def cut(self, pages: float) -> None:
        """A body cut mid-JSON: `pages` (events left unsent / the page size) never reached the client."""
        with self._lock:
            self.cut_pages += pages

    def early_retry(self, endpoint: str, early_by_s: float) -> None:
        """A request that came inside a 429 lockout, `early_by_s` before its end (when it was not extended)."""
        with self._lock:
            self.early_by_endpoint[endpoint] += 1
            if len(self.early_list) < EARLY_KEPT:
                self.early_list.append((endpoint, round(time.monotonic() - self._started, 2), round(early_by_s, 2)))

    def chaos_applied(self, knob: str) -> None:
        with self._lock:
            self.chaos[knob] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": {ep: dict(codes) for ep, codes in self.requests.items()},
                "rate_limited": self.rate_limited,
                "early_retries": sum(self.early_by_endpoint.values()),
                "early_by_endpoint": dict(self.early_by_endpoint),
                "early_list": list(self.early_list),
                "bytes_sent": self.bytes_sent,
                "events_served": self.events_served,
                "chaos": dict(self.chaos),
                "tokens_issued": self.tokens_issued,
                "cursors_issued": self.cursors_issued,
                "cut_pages": round(self.cut_pages, 3),
            }
