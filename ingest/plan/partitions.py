"""The plan of a pass: time partitions, their positions, and splitting the largest for idle workers.

A partition holds events with lo_ms <= timestamp < hi_ms (None: unbounded). Bounds are timestamps
only, never (timestamp, id) pairs, so events tied at a boundary all fall on one side.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from ingest.store.partition_row import Partition

# The store keeps the density as min_split_ms, the range of this many pages (splits no longer need them:
# MIN_PIECE_PAGES): every page count of the plan is read from it.
MIN_SPLIT_PAGES = 2
# A partition planned to hold whole pages is cut this share short of them: the probe's density is an
# estimate (on the simulator's data, seeds 1 and 4242, partitions held 0.7 % more events than it said),
# and a partition a few events over its pages ends in a request for those few.
PAGE_MARGIN = 0.02
# A thief's piece is at least this many pages: the running chain keeps whole pages (see PAGE_MARGIN), so a
# split costs about the piece's own partial page, and at the end of a pass a chain walking 3 pages alone
# takes 3 page times where two take 2.
MIN_PIECE_PAGES = 1


class Plan:
    """All partitions of a pass; thread-safe where workers and the coordinator meet."""

    def __init__(self, partitions: list[Partition], oldest_ms: int | None, min_split_ms: int = 0) -> None:
        self._lock = threading.Lock()
        self.partitions = {p.partition_id: p for p in partitions}
        self.oldest_ms = oldest_ms
        self.min_split_ms = min_split_ms  # ms of range holding MIN_SPLIT_PAGES pages (0: unknown, no splits)
        self.splittable = True  # False once the API refused built cursors: new partitions need them

    def learn_density(self, first_ms: int, last_ms: int, events: int, total: int | None, page_size: int,
                      *, at_top: bool) -> None:
        """Learn how dense events are from one page, when the plan was made without a probe (or resumed).

        Sets the narrowest range worth splitting; from a page at the very top (newest events) with
        meta.total, also the estimated oldest timestamp that open-ended partitions are split against.
        """
        with self._lock:
            if events < 2 or first_ms <= last_ms:
                return
            per_event_ms = (first_ms - last_ms) / (events - 1)
            if not self.min_split_ms:
                self.min_split_ms = max(1, int(MIN_SPLIT_PAGES * page_size * per_event_ms))
            if at_top and self.oldest_ms is None and total:
                self.oldest_ms = int(first_ms - total * per_event_ms)

    def lower_bound(self, partition_id: int) -> int | None:
        with self._lock:
            return self.partitions[partition_id].lo_ms

    def advance(self, partition_id: int, cursor: str | None, pos_ms: int | None, pos_id: str | None,
                cursor_kind: str) -> None:
        """Record how far a walker has fetched (not yet committed), for splitting and for handing over."""
        with self._lock:
            part = self.partitions[partition_id]
            part.cursor, part.pos_ms, part.pos_id, part.cursor_kind = cursor, pos_ms, pos_id, cursor_kind

    def claim_done(self, partition_id: int, lower_bound_used: int | None) -> bool:
        """Mark a partition done if its lower bound is still the one its last page was cut at.

        False when a split or a fallback moved the bound meanwhile: the page must be cut again.
        """
        with self._lock:
            part = self.partitions[partition_id]
            if part.lo_ms != lower_bound_used:
                return False
            part.done = True
            return True

    def pending(self) -> list[Partition]:
        with self._lock:
            return [p for p in self.partitions.values() if not p.done]

    def remaining_pages(self, running: set[int]) -> float | None:
        """Estimated pages still to fetch in the running partitions (None while the density is unknown)."""
        with self._lock:
            if not self.min_split_ms:
                return None
            page_ms = self.min_split_ms / MIN_SPLIT_PAGES
            return sum(self.partitions[i].remaining_ms(self.oldest_ms) for i in running) / page_ms

    def propose_split(self, running: set[int], share_of: Callable[[int], float] = lambda pid: 0.5,
                      ) -> tuple[int, int, Partition] | None:
        """A split of the running partition with the most range left: (its id, middle, new partition).

        The new partition takes about the lower `share_of(its id)` of the range left, at least
        MIN_PIECE_PAGES pages; the running one keeps the rest below its position rounded to whole pages
        less PAGE_MARGIN (its last page nearly full: the split costs the new partition's partial page
        only), at least one. None when that leaves the new one less than MIN_PIECE_PAGES, or when the
        share is 0 (the thief would end after the owner alone). Changes nothing:
        the caller persists the split, then applies it (`apply_split`), so no walker acts on a bound the
        database does not hold yet.
        """
        with self._lock:
            candidates = [self.partitions[i] for i in running if not self.partitions[i].done]
            if not candidates or not self.splittable or not self.min_split_ms:
                return None
            widest = max(candidates, key=lambda p: p.remaining_ms(self.oldest_ms))
            share = share_of(widest.partition_id)
            if share <= 0:
                return None
            page_ms = self.min_split_ms / MIN_SPLIT_PAGES
            pages = widest.remaining_ms(self.oldest_ms) / page_ms
            # A slow thief still takes the smallest piece worth a split rather than idling.
            thief = max(pages * share, MIN_PIECE_PAGES)
            kept = min(max(1, round(pages - thief)), math.floor((pages - MIN_PIECE_PAGES) / (1 - PAGE_MARGIN)))
            if kept < 1:
                return None
            top = widest.pos_ms if widest.pos_ms is not None else widest.hi_ms
            assert top is not None  # a range left implies a known top
            middle = top - int(kept * (1 - PAGE_MARGIN) * page_ms)
            return widest.partition_id, middle, Partition(max(self.partitions) + 1, widest.lo_ms, middle)

    def propose_cut(self, running: set[int], keep_pages: float, min_rest_pages: float,
                    ) -> tuple[int, int, Partition] | None:
        """A split of the running partition with the most range left that leaves it `keep_pages` below its
        position and gives the new partition the rest, below that (the last window's fan-out: each chain
        fetches a piece in as few requests as it can, all at once).

        None unless the rest is over `min_rest_pages` (below that the running chain's own requests cover it), or
        while the density is unknown. Changes nothing, as `propose_split`.
        """
        with self._lock:
            candidates = [self.partitions[i] for i in running if not self.partitions[i].done]
            if not candidates or not self.splittable or not self.min_split_ms:
                return None
            page_ms = self.min_split_ms / MIN_SPLIT_PAGES
            widest = max(candidates, key=lambda p: p.remaining_ms(self.oldest_ms))
            width = widest.remaining_ms(self.oldest_ms)
            keep = max(1, int(keep_pages * page_ms))
            if width - keep <= int(min_rest_pages * page_ms):
                return None
            top = widest.pos_ms if widest.pos_ms is not None else widest.hi_ms
            assert top is not None  # width > 0 implies a known top
            middle = top - keep
            return widest.partition_id, middle, Partition(max(self.partitions) + 1, widest.lo_ms, middle)

    def apply_split(self, narrowed_id: int, middle_ms: int, new: Partition) -> None:
        """Apply a persisted split: the running fetcher sees the raised bound on its next page.

        Should the narrowed partition have finished meanwhile, the new one still runs (it is persisted);
        it fetches a range already covered, and the upsert absorbs it.
        """
        with self._lock:
            narrowed = self.partitions[narrowed_id]
            if not narrowed.done:
                narrowed.lo_ms = middle_ms
            self.partitions[new.partition_id] = new

    def cover_with_server_cursors(self, refused_id: int) -> tuple[Partition | None, Partition | None]:
        """The API refused a built start cursor for `refused_id`: fold its range into a chain of server cursors.

        The top partition (no upper bound, started without a cursor) is extended to the oldest event, or,
        if it is already done, a new unbounded partition is created. Returns (extended, created), one of
        them set; the refused partition is marked done. Overlap with other partitions is absorbed by the
        upsert.
        """
        with self._lock:
            self.splittable = False
            self.partitions[refused_id].done = True
            top = next((p for p in self.partitions.values() if p.hi_ms is None and not p.done), None)
            if top is not None:
                if top.lo_ms is None:
                    return None, None
                top.lo_ms = None
                return top, None
            created = Partition(max(self.partitions) + 1, None, None)
            self.partitions[created.partition_id] = created
            return None, created


def page_partitions(newest_ms: int, per_event_ms: float, total: int, page_size: int, count: int) -> list[Partition]:
    """At most `count` partitions newest first, tiling everything: each but the oldest (open-ended, it takes
    what is left) spans a whole number of pages at `per_event_ms`, less PAGE_MARGIN, so that its last
    page is nearly full; the newest is open-ended too.

    Every partition ends in a request for what is left of its range: cut evenly, half a page on average.
    The pages each holds are the even share rounded up, so the oldest holds a little less than the others.
    """
    count = max(1, count)
    pages = total / page_size
    whole = max(1, math.ceil(pages / count / (1 - PAGE_MARGIN) - 1e-9))
    held = whole * (1 - PAGE_MARGIN)  # pages one partition holds by the estimate
    uppers = max(0, min(count - 1, math.ceil(pages / whole - 1e-9) - 1))  # the oldest keeps some pages too
    width = max(1, int(held * page_size * per_event_ms))
    bounds = [newest_ms + 1 - i * width for i in range(1, uppers + 1)]
    his: list[int | None] = [None, *bounds]
    los: list[int | None] = [*bounds, None]
    return [Partition(i + 1, lo, hi) for i, (lo, hi) in enumerate(zip(los, his, strict=True))]


def min_split_ms(newest_ms: int | None, oldest_ms: int | None, total: int | None, page_size: int) -> int:
    """Milliseconds of range that hold MIN_SPLIT_PAGES pages at the dataset's average density."""
    if newest_ms is None or oldest_ms is None or not total:
        return 0
    return int(MIN_SPLIT_PAGES * page_size * (newest_ms - oldest_ms) / total)
