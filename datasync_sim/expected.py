"""`/__sim/expected`: what a perfect ingester holds — the valid unique ids and their fingerprint."""

from __future__ import annotations

import threading

from .dataset import BLOCK, R_TS, View
from .digest import IdDigest, uuid_raw
from .late import LATE_KEY0


class Expected:
    """Computes the expected set once per dataset state (a few seconds at 3M events) and caches it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, int], dict] = {}

    def get(self, view: View) -> dict:
        state = (view.g, view.total)  # grown and total: a release changes the second alone
        with self._lock:  # concurrent callers wait for one computation instead of repeating it
            if state not in self._cache:
                self._cache = {state: self._compute(view)}
            return self._cache[state]

    @staticmethod
    def _compute(view: View) -> dict:
        ds = view.ds
        damaged = {uuid_raw(eid) for eid in ds.damaged_ids()}
        digest = IdDigest()
        batch = ds._batch
        total_keys = ds.n + view.g
        for first in range(0, total_keys, BLOCK):
            for raw in batch.raw(first, min(BLOCK, total_keys - first)):
                if raw not in damaged:
                    digest.add(raw)
        late = len(view.late) if view.late is not None else 0
        for first in range(0, late, BLOCK):
            for raw in batch.raw(LATE_KEY0 + first, min(BLOCK, late - first)):
                digest.add(raw)
        count, sha = digest.finish()
        newest = view.record(0)[R_TS] if view.total else None
        oldest = view.record(view.total - 1)[R_TS] if view.total else None
        return {"count": count, "sha256": sha, "newest_ts": newest, "oldest_ts": oldest}
