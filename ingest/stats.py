"""One thread-safe set of counters for the whole run, read by progress lines and the summary."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    with_nulls: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    total_hint: int | None = None  # meta.total as the API last reported it
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def committed(self, *, stored: int, duplicates: int, quarantined: int, with_nulls: int) -> None:
        with self._lock:
            self.stored += stored
            self.duplicates += duplicates
            self.quarantined += quarantined
            self.with_nulls += with_nulls

    def count(self, *, retries: int = 0, throttled: int = 0) -> None:
        """A failed request to retry (a 429 counts as both)."""
        with self._lock:
            self.retries += retries
            self.throttled += throttled

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rate(self) -> float:
        """Events stored per second since the run started."""
        return self.stored / max(self.elapsed(), 1e-9)
