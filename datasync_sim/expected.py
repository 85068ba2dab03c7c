"""`/__sim/expected`: what a perfect ingester holds — the valid unique ids and their fingerprint."""

from __future__ import annotations

import threading

from .dataset import BLOCK, R_TS, View
from .digest import IdDigest, uuid_raw


class Expected:
    """Computes the expected set once per growth level (a few seconds at 3M events) and caches it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[int, dict] = {}

    def get(self, view: View) -> dict:
        with self._lock:  # concurrent callers wait for one computation instead of repeating it
            if view.total not in self._cache:
                self._cache = {view.total: self._compute(view)}
            return self._cache[view.total]

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
        count, sha = digest.finish()
        newest = view.record(0)[R_TS] if view.total else None
        oldest = view.record(view.total - 1)[R_TS] if view.total else None
        return {"count": count, "sha256": sha, "newest_ts": newest, "oldest_ts": oldest}
