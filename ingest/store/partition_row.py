"""One partition of a pass as the store keeps it: its time range, position and cursor.

The plan (ingest/plan/partitions.py) moves these; the checkpoint reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Partition:
    partition_id: int
    lo_ms: int | None
    hi_ms: int | None
    cursor: str | None = None
    pos_ms: int | None = None
    pos_id: str | None = None
    done: bool = False
    events: int = 0
    cursor_kind: str | None = None  # which endpoint issued `cursor` (None: read from a checkpoint)

    def remaining_ms(self, oldest_ms: int | None) -> int:
        """Width of the time range still to fetch (0 when unknown or done)."""
        top = self.pos_ms if self.pos_ms is not None else self.hi_ms
        bottom = self.lo_ms if self.lo_ms is not None else oldest_ms
        if self.done or top is None or bottom is None:
            return 0
        return max(0, top - bottom)
