"""The API's cursor format: standard base64 of compact JSON {"id", "ts", "v": 2, "exp"}.

The cursor is not signed, so an expired one can be rebuilt from the last committed (ts, id).
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import TypeGuard

import orjson

CURSOR_VERSION = 2
# Lifetime we ask for in rebuilt cursors; the live API issues ~117 s.
REBUILT_CURSOR_TTL_S = 117
# An id below every UUID: a cursor at (ts, ZERO_ID) continues with the events strictly older than ts.
ZERO_ID = "00000000-0000-0000-0000-000000000000"


def decode_cursor(cursor: str | None) -> tuple[int, str] | None:
    """The (ts, id) position a cursor continues after, or None when it is not in the known format."""
    body = _body(cursor)
    ts, event_id = body.get("ts"), body.get("id")
    if _is_int(ts) and isinstance(event_id, str):
        return ts, event_id
    return None


def cursor_expiry_ms(cursor: str | None) -> int | None:
    """When a cursor expires (epoch ms on the server's clock), or None when it does not say."""
    exp = _body(cursor).get("exp")
    return exp if _is_int(exp) else None


def build_cursor(
    ts_ms: int, event_id: str, *, now_ms: int | None = None, ttl_s: int = REBUILT_CURSOR_TTL_S
) -> str:
    """A cursor continuing after (ts_ms, event_id), valid for ttl_s from `now_ms`.

    `now_ms` is the server's time (ServerClock.now_ms()): the server checks `exp` against its own
    clock. Without it, the local wall clock stands in.
    """
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    body = {"id": event_id, "ts": ts_ms, "v": CURSOR_VERSION, "exp": now_ms + ttl_s * 1000}
    return base64.b64encode(orjson.dumps(body)).decode()


def _body(cursor: str | None) -> dict:
    if not cursor:
        return {}
    try:
        body = orjson.loads(base64.b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
