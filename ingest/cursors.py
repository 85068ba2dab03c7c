"""The API's cursor format: standard base64 of compact JSON {"id", "ts", "v": 2, "exp"}.

The cursor is not signed, so an expired one can be rebuilt from the last committed (ts, id).
"""

from __future__ import annotations

import base64
import binascii
import time

import orjson

CURSOR_VERSION = 2
# Lifetime we ask for in rebuilt cursors; the live API issues ~117 s.
REBUILT_CURSOR_TTL_S = 117
# An id below every UUID: a cursor at (ts, ZERO_ID) continues with the events strictly older than ts.
ZERO_ID = "00000000-0000-0000-0000-000000000000"


def decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    """The (ts, id) position a cursor continues after, or None when it is not in the known format."""
    if not cursor:
        return None
    try:
        body = orjson.loads(base64.b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    ts, event_id = body.get("ts"), body.get("id")
    if isinstance(ts, int) and not isinstance(ts, bool) and isinstance(event_id, str):
        return ts, event_id
    return None


def build_cursor(ts_ms: int, event_id: str, *, wall=time.time, ttl_s: int = REBUILT_CURSOR_TTL_S) -> str:
    """A cursor continuing after (ts_ms, event_id), valid for ttl_s from now."""
    body = {"id": event_id, "ts": ts_ms, "v": CURSOR_VERSION, "exp": int(wall() * 1000) + ttl_s * 1000}
    return base64.b64encode(orjson.dumps(body)).decode()
