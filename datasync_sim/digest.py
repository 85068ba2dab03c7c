"""Order-independent fingerprint of a set of UUIDs: its size and the sha256 of the sorted list.

The canonical text is the sorted distinct lowercase ids joined by "\n", no trailing newline.
Ids are kept as 16 raw bytes in 256 buckets keyed by their first byte (48 MB for 3M ids, not the
~250 MB of 3M Python strings); sorting raw big-endian bytes gives the same order as the strings.
"""

from __future__ import annotations

import hashlib

from .ids import format_raw

_HEX = frozenset("0123456789abcdef")


def uuid_raw(text: str) -> bytes | None:
    """16 raw bytes of a lowercase dashed UUID string, or None if `text` is not one."""
    if len(text) != 36 or text[8] != "-" or text[13] != "-" or text[18] != "-" or text[23] != "-":
        return None
    h = text[:8] + text[9:13] + text[14:18] + text[19:23] + text[24:]
    if not _HEX.issuperset(h):
        return None
    return bytes.fromhex(h)


class IdDigest:
    """Accumulates raw ids (duplicates allowed); `finish()` gives (distinct count, sha256 hex)."""

    def __init__(self) -> None:
        self._buckets = [bytearray() for _ in range(256)]

    def add(self, raw: bytes) -> None:
        self._buckets[raw[0]] += raw

    def finish(self) -> tuple[int, str]:
        h = hashlib.sha256()
        count = 0
        for bucket in self._buckets:
            ids = sorted({bytes(bucket[i:i + 16]) for i in range(0, len(bucket), 16)})
            if not ids:
                continue
            text = "\n".join(format_raw(r) for r in ids)
            h.update((("\n" if count else "") + text).encode())
            count += len(ids)
        return count, h.hexdigest()
