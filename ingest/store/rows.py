"""Turn raw API events into COPY-ready rows for the staging table, or quarantine records.

The writer COPYs rows in PostgreSQL's text format, so each event becomes one preformatted line here,
in the fetcher thread, and the writer only streams bytes. Columns, in order: id, event_type, ts_ms,
session_id, user_id, data (see schema.sql).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import orjson

from ingest.store.timestamps import parse_timestamp_ms

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
NULL = b"\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass(frozen=True)
class Quarantined:
    """An event that cannot be stored in ingested_events, with why."""

    payload: bytes
    reason: str
    event_id: str | None = None  # its id when usable: a copy stored elsewhere means nothing is missing


@dataclass
class Rows:
    """The rows of one page, ready for COPY, plus what could not be stored."""

    lines: list[bytes] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    events_with_nulls: int = 0


def usable_uuid(value: object) -> str | None:
    """The value as a lowercase UUID string, or None when it is not one."""
    if isinstance(value, str) and len(value) == 36 and _UUID.fullmatch(value):
        return value.lower()
    return None


def _text(value: object) -> bytes:
    if isinstance(value, str) and value and "\x00" not in value:
        return value.translate(_COPY_ESCAPES).encode()
    return NULL


def event_line(event: dict, ts_ms: int | None) -> tuple[bytes | None, str | None, bool]:
    """One staging line for an event: (line, reason it cannot be stored, whether a field is NULL)."""
    event_id = usable_uuid(event.get("id"))
    if event_id is None:
        return None, f"no usable id: {event.get('id')!r:.80}", False
    data = orjson.dumps(event)
    if b"\\u0000" in data:
        return None, "payload holds a NUL character, which jsonb cannot store", False
    session_id = usable_uuid(event.get("sessionId"))
    user_id = usable_uuid(event.get("userId"))
    event_type = _text(event.get("type"))
    has_null = ts_ms is None or session_id is None or user_id is None or event_type is NULL
    line = b"\t".join(
        (
            event_id.encode(),
            event_type,
            NULL if ts_ms is None else str(ts_ms).encode(),
            NULL if session_id is None else session_id.encode(),
            NULL if user_id is None else user_id.encode(),
            data.replace(b"\\", b"\\\\"),
        )
    )
    return line + b"\n", None, has_null


def transform_events(events: list, timestamps_ms: list[int | None]) -> Rows:
    """Rows for a page's events; `timestamps_ms` are their parsed timestamps, index for index."""
    page = Rows()
    for event, ts_ms in zip(events, timestamps_ms, strict=True):
        if not isinstance(event, dict):
            page.quarantined.append(Quarantined(orjson.dumps(event), "event is not a JSON object"))
            continue
        line, reason, has_null = event_line(event, ts_ms)
        if line is None:
            page.quarantined.append(Quarantined(orjson.dumps(event), reason or "unknown", usable_uuid(event.get("id"))))
            continue
        page.lines.append(line)
        page.events_with_nulls += has_null
    return page


def parse_timestamps(events: list) -> list[int | None]:
    """Parsed timestamp of each event (None where missing or not a time, or not an object)."""
    return [parse_timestamp_ms(e.get("timestamp")) if isinstance(e, dict) else None for e in events]
