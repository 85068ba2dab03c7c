"""A budget's page time: how long its full pages take (the one latency model) and how long to wait for one.

Only full pages teach it (docs/scheduling.md). A held answer keeps its chain idle until the read timeout,
and the same request sent again answers in a page time: so the wait is a few times the slowest recent
page (a fixed 15 s cost ~11 s per held answer), doubled per timeout in a row, so a slowed API is waited for.
"""

from __future__ import annotations

import threading
from collections import deque

RECENT_ANSWERS = 8  # full-page answers remembered; the slowest of them sets the wait
LEARNED_AFTER = 3  # answers before the learned wait replaces the configured one
SLOWEST_FACTOR = 2.5  # × the slowest recent answer: ordinary variation never times out
MIN_WAIT_S = 5.0  # s; never less, whatever the answers: connection set-up and a busy writer add to them
DEFAULT_LATENCY_S = 3.5  # s; a 5000-event page on the live API, until a full page says otherwise
LATENCY_WEIGHT = 0.2  # weight of the newest full page in the moving average of page times
DEFAULT_TIMEOUT_S = 15.0  # s; REQUEST_TIMEOUT's default, for throttles built without settings (tests)


class AnswerTimer:
    """One budget's read timeout for full pages; thread-safe (its chains share it)."""

    def __init__(self, configured_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._configured_s = configured_s  # REQUEST_TIMEOUT: the ceiling, and the wait until answers are known
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=RECENT_ANSWERS)
        self._timeouts_in_a_row = 0
        self._average_s: float | None = None

    def latency_s(self) -> float:
        """The budget's page time: a moving average of its full pages' answers."""
        with self._lock:
            return DEFAULT_LATENCY_S if self._average_s is None else self._average_s

    def timeout_s(self) -> float:
        """Seconds to wait for the next full page's answer."""
        with self._lock:
            if len(self._recent) < LEARNED_AFTER:
                return self._configured_s
            learned = max(MIN_WAIT_S, SLOWEST_FACTOR * max(self._recent)) * 2 ** self._timeouts_in_a_row
            return min(self._configured_s, learned)

    def answered(self, seconds: float) -> None:
        """A full page came back after `seconds`."""
        with self._lock:
            self._recent.append(seconds)
            self._average_s = seconds if self._average_s is None else (
                (1 - LATENCY_WEIGHT) * self._average_s + LATENCY_WEIGHT * seconds)
            self._timeouts_in_a_row = 0

    def timed_out(self) -> None:
        with self._lock:
            self._timeouts_in_a_row += 1
