"""Cursors: standard base64 of compact JSON `{"id":…,"ts":…,"v":2,"exp":…}`.

A cursor means "continue after (ts, id)"; nothing in it is signed, exactly like the live API, so
clients can rebuild or forge one. With `reject_forged_cursors` the server remembers what it issued
and refuses the rest.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections import OrderedDict
from dataclasses import dataclass

import orjson

ISSUED_MAX = 1_000_000  # cursors remembered for reject_forged_cursors; ~100 MB worst case


class CursorError(Exception):
    """A cursor the server refuses; `code` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Cursor:
    ts: int
    id: str
    exp: int  # epoch ms


def encode(ts: int, eid: str, exp_ms: int) -> str:
    """The cursor text for (ts, eid) expiring at `exp_ms` (epoch ms)."""
    raw = orjson.dumps({"id": eid, "ts": ts, "v": 2, "exp": exp_ms})
    return base64.b64encode(raw).decode()


def decode(text: str, now_ms: int) -> Cursor:
    """Parse and check a cursor; raises CursorError CURSOR_INVALID_FORMAT or CURSOR_EXPIRED."""
    # a '+' in an unencoded query string arrives as a space
    text = text.strip().replace(" ", "+")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        obj = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise CursorError("CURSOR_INVALID_FORMAT", "Invalid cursor format") from None
    if not isinstance(obj, dict):
        raise CursorError("CURSOR_INVALID_FORMAT", "Invalid cursor format")
    ts, eid, exp = obj.get("ts"), obj.get("id"), obj.get("exp")
    if (not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(eid, str)
            or not isinstance(exp, int | float) or isinstance(exp, bool) or obj.get("v") != 2):
        raise CursorError("CURSOR_INVALID_FORMAT", "Invalid cursor format")
    if exp < now_ms:
        minutes = int((now_ms - exp) // 60_000)
        raise CursorError("CURSOR_EXPIRED", f"Cursor expired {minutes} minute(s) ago")
    return Cursor(ts, eid, int(exp))


class IssuedCursors:
    """The set of cursors this server handed out (bounded, oldest forgotten first)."""

    def __init__(self, limit: int = ISSUED_MAX) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, text: str) -> None:
        with self._lock:
            self._seen[text] = None
            if len(self._seen) > self._limit:
                self._seen.popitem(last=False)

    def __contains__(self, text: str) -> bool:
        with self._lock:
            return text in self._seen
