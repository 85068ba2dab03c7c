"""When to send a failed request again, and after how long: a policy object; the loop is the caller's."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from ingest.errors import FatalApiError

MAX_DOUBLINGS = 64  # doublings; far past any cap, and keeps 2**n from overflowing a float

# RFC 9110 allows only whole seconds; fractions are accepted because they are harmless and unambiguous.
_DELAY_SECONDS = re.compile(r"\d+(\.\d+)?")
# s; the API's rate windows last 60 s (20 and 30 were also reported) and Retry-After is what is left of
# one, so five windows leave room for rounding and extended lockouts. A longer wait is a ban or
# maintenance, not a rate limit: sleeping through it would hold every fetcher silently for hours.
MAX_RETRY_AFTER_S = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a request gets and how long to wait between them (seconds)."""

    max_attempts: int = 8  # attempts per request before the run gives up (FatalApiError by the caller)
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    max_retry_after_s: float = MAX_RETRY_AFTER_S

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 < self.backoff_base_s <= self.backoff_cap_s:
            raise ValueError(
                f"need 0 < backoff_base_s <= backoff_cap_s, got {self.backoff_base_s}, {self.backoff_cap_s}"
            )
        if not self.max_retry_after_s > 0:
            raise ValueError(f"max_retry_after_s must be positive, got {self.max_retry_after_s}")

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), with "full jitter".

        Uniform in [0, min(cap, base * 2**(attempt - 1))): attempt 1 waits up to the base, each
        further attempt doubles the ceiling until the cap. Jitter spreads threads that failed together.
        """
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2.0 ** min(attempt - 1, MAX_DOUBLINGS))
        return ceiling * rand()

    def retry_after(self, headers: Mapping[str, str], wall: Callable[[], float] = time.time) -> float | None:
        """Seconds the server asked us to wait (>= 0), from Retry-After as delay-seconds or an HTTP-date.

        None when the header is absent or unreadable. A date in the past gives 0. `wall` is the epoch clock
        the date is measured against: the server's, when known. Header names match case-insensitively
        even in a plain dict. Raises FatalApiError when the wait is longer than max_retry_after_s.
        """
        # Not urllib3's Retry.parse_retry_after: it measures dates against time.time() (neither the
        # server's clock nor injectable), refuses fractions, and clamps a long wait where we must stop.
        value = _header(headers, "Retry-After")
        if value is None:
            return None
        value = value.strip()
        if _DELAY_SECONDS.fullmatch(value):
            return self.allowed_wait(float(value))
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # the asctime form carries no zone, and every HTTP-date is GMT
            when = when.replace(tzinfo=UTC)
        return self.allowed_wait(max(0.0, when.timestamp() - wall()))

    def allowed_wait(self, seconds: float | None) -> float | None:
        """`seconds` of a wait the server asked for; None when absent, negative or not a number.

        Raises FatalApiError when it is longer than max_retry_after_s: the run stops (its checkpoint
        kept) and says so, rather than sleep for hours.
        """
        if seconds is None or not seconds >= 0:
            return None
        if seconds > self.max_retry_after_s:
            raise FatalApiError(
                f"the API asked us to wait {seconds:.0f} s before sending again, longer than the"
                f" {self.max_retry_after_s:.0f} s any rate limit window needs (a ban or maintenance?):"
                " stopping instead of sleeping; rerun later to resume"
            )
        return seconds

    def gives_up(self, attempt: int) -> bool:
        """True when failed attempt number `attempt` (1-based) was the last one this request gets."""
        return attempt >= self.max_attempts


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)
