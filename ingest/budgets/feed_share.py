"""Whether the feed draws on the header pool's bucket: one of the three reports of its throttling.

There, each budget spends the other's window unseen, so a 429 of one opens a lockout the other sends
into, and where early retries are punished each extends it for the other (measured at 300k: 3.3 × the
minimum, 29 early arrivals). The 429s tell: a feed 429 whose Retry-After is a window's (over MAX_GUESS_S,
no refill) and whose body names the header pool's Limit ends with the header pool's window, or with a
header 429 of the same Limit. From then on the feed takes its turns from the header pool's window, so a
429 of either pauses both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loguru import logger

from ingest.budgets.pacer import MAX_GUESS_S
from ingest.budgets.throttle import Throttle

# s; two ends of one window seen by two budgets: our anchors (send times, whole-second Reset) differ by less
COINCIDE_S = 2.0


class FeedShareWatch:
    """Watches the 429s of a key's feed and header pool; couples them once they prove one bucket."""

    def __init__(self, feed: Throttle, header: Throttle, clock: Callable[[], float] = time.monotonic) -> None:
        self._feed, self._header = feed, header
        self._clock = clock  # the throttles' clock
        self._lock = threading.Lock()
        self._ends: dict[str, tuple[int, float]] = {}  # budget -> (Limit, end) of its last window-long 429
        self.shared = False
        feed.on_refused = lambda retry_after, limit, until: self._refused("feed", retry_after, limit, until)
        header.on_refused = lambda retry_after, limit, until: self._refused("header", retry_after, limit, until)

    def _refused(self, who: str, retry_after_s: float | None, limit: int | None, until: float) -> None:
        if retry_after_s is None or retry_after_s <= MAX_GUESS_S or limit is None:
            return  # a refill's refusal, or a bucket unnamed: nothing to match
        with self._lock:
            if self.shared:
                return
            self._ends[who] = (limit, until)
            feed = self._ends.get("feed")
            # the header pool's ends: its last window-long 429's, and its open window's
            header = [end for end in (self._ends.get("header"), self._header.limiter.announced()) if end is not None]
            if feed is None or not any(h[0] == feed[0] and abs(h[1] - feed[1]) <= COINCIDE_S for h in header):
                return
            self.shared = True
            end = max(feed[1], *(e for _, e in header))
        self._header.limiter.pause_for(end - self._clock())
        self._feed.limiter = self._header.limiter
        logger.warning("the feed draws on the header pool's bucket ({} per window): it takes its turns from that"
                       " window from here", limit)
