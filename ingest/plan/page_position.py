"""Where a page leaves its chain in the API's (timestamp, id) order, and the page as the writer takes it."""

from __future__ import annotations

from ingest.api.client import Envelope
from ingest.api.cursors import decode_cursor
from ingest.store.page_commit import PageCommit
from ingest.store.rows import parse_timestamps, transform_events, usable_uuid
from ingest.store.timestamps import in_captured_form


def page_commit(pid: int, page: Envelope, cursor: str | None, pos: tuple[int, str] | None, where: str,
                *, at_top: bool) -> PageCommit:
    """The page's rows and where the partition stands after it (`last` is decided by the caller): its next
    cursor's position, else (pagination damaged) its last exactly placed event."""
    events = page.events
    stamps = parse_timestamps(events)
    rows = transform_events(events, stamps)
    if page.pagination_damaged:
        new_pos = resume_point(events, stamps)
    else:
        new_pos = decode_cursor(page.next_cursor) or _last_position(events, stamps) or pos
    return PageCommit(
        partition_id=pid,
        next_cursor=page.next_cursor,
        pos_ms=new_pos[0] if new_pos else None,
        pos_id=new_pos[1] if new_pos else None,
        last=False,
        lines=tuple(rows.lines),
        quarantined=tuple(rows.quarantined),
        events_with_nulls=rows.events_with_nulls,
        source=f"{where} cursor {cursor or '(start)'}",
        newest=_newest(events, stamps) if at_top else None,
    )


def _newest(events: list, stamps: list[int | None]) -> tuple[int, str] | None:
    """The newest (timestamp, id) of the page at the top of the API's order."""
    placed = [(ts, usable_uuid(e.get("id"))) for e, ts in zip(events, stamps, strict=True)
              if ts is not None and isinstance(e, dict)]
    return max(((ts, eid) for ts, eid in placed if eid is not None), default=None)


def resume_point(events: list, stamps: list[int | None]) -> tuple[int, str] | None:
    """Where the API's order goes on after a page that lost its next cursor: at its last exactly placed event
    (a captured timestamp form, a well-formed id), in a page that runs in (timestamp, id) descending order. A
    timestamp read too low would skip events; an earlier event only fetches some twice."""
    placed = [(ts, e["id"], in_captured_form(e.get("timestamp"))) for e, ts in zip(events, stamps, strict=True)
              if ts is not None and isinstance(e, dict) and usable_uuid(e.get("id")) == e.get("id")]
    if any(a[:2] < b[:2] for a, b in zip(placed, placed[1:], strict=False)):
        return None
    return next(((ts, eid) for ts, eid, exact in reversed(placed) if exact), None)


def _last_position(events: list, stamps: list[int | None]) -> tuple[int, str] | None:
    for event, ts in zip(reversed(events), reversed(stamps), strict=True):
        if ts is not None and isinstance(event, dict) and isinstance(event.get("id"), str):
            return ts, event["id"]
    return None
