"""Page bodies: the events envelope assembled from precomputed event bytes, with data chaos.

Nothing here goes through a generic JSON encoder per event: an event is two prebuilt byte strings
(timestamp as epoch ms or as ISO) and a page is one `b",".join`. Only the rare chaos paths
(missing fields) re-encode single events.
"""

from __future__ import annotations

import hashlib

import orjson

from .chaos import EVENT_FIELDS, VARIANTS, Plan, affected, pick
from .dataset import R_HEAD, R_ID, R_TAIL, R_TS, event_iso, event_ms
from .timefmt import ODD_FORMS, odd_json, variant_json

MIXED = "mixed"  # /api/v1/events: items 0, 3, 6, … epoch ms, the others ISO strings
EPOCH_MS = "ms"  # the feed: every timestamp epoch ms


def event_items(records: list[tuple], form: str, plan: Plan | None, odd: float = 0.0) -> tuple[list[bytes], bool]:
    """The JSON bytes of each record in page order; returns (items, missing fields applied).

    `odd` (MIXED only) is the share of events whose timestamp is served in an odd form (`odd_form`).
    """
    if form == MIXED:
        items = [event_iso(rec) if i % 3 else event_ms(rec) for i, rec in enumerate(records)]
        if odd:
            for i, rec in enumerate(records):
                kind = odd_form(rec[R_ID], odd)
                if kind is not None:
                    items[i] = rec[R_HEAD] + odd_json(rec[R_TS], kind) + rec[R_TAIL]
    else:
        items = [event_ms(rec) for rec in records]
    missing = False
    if plan is not None and records:
        if plan.ts_variant:
            for i in affected(len(records), plan, 1):
                ts = records[i][R_TS]
                value = variant_json(ts, pick(VARIANTS, plan, i, 1))
                if value is not None:
                    items[i] = event_ms(records[i]).replace(b'"timestamp":%d,' % ts, b'"timestamp":' + value + b",", 1)
        if plan.missing_fields:
            for i in affected(len(records), plan, 2):
                event = orjson.loads(items[i])
                event.pop(pick(EVENT_FIELDS, plan, i, 2), None)
                items[i] = orjson.dumps(event)
            missing = True
    return items, missing


def odd_form(eid: str, rate: float) -> str | None:
    """The odd timestamp form of event `eid` at `rate`, or None: fixed per event, whatever the page.

    Ids are seeded and look random, so their last 48 bits are the draw: 32 for whether, 16 for which.
    """
    if int(eid[28:36], 16) >= rate * 0x1_0000_0000:
        return None
    return ODD_FORMS[int(eid[24:28], 16) % len(ODD_FORMS)]


# members a tolerant parser (json.loads) accepts and orjson refuses: a lone surrogate escape, a bare
# NaN, a float beyond double range, an integer beyond 64 bits (orjson reads a 20-308 digit integer
# as a lossy float without complaint, so this one is beyond double range too)
POISONS = (b'"note":"\\ud83d"', b'"score":NaN', b'"ratio":1e400', b'"ref":1' + b"0" * 309)
_PROPERTIES = b'"properties":{'


def poison(items: list[bytes], first_id: str, rate: float, seed: int) -> bool:
    """Maybe slip one POISONS member into the properties of one event of `items`; True if done.

    Fixed per page, keyed by the id of its first event, so refetching a page gets the same poison.
    """
    if not items:
        return False
    draw = int.from_bytes(hashlib.blake2b(f"{seed}:{first_id}".encode(), digest_size=16).digest())
    if (draw & 0xFFFF_FFFF) >= rate * 0x1_0000_0000:
        return False
    i = (draw >> 32) % len(items)
    member = POISONS[(draw >> 96) % len(POISONS)]
    item = items[i]
    if _PROPERTIES in item:
        items[i] = item.replace(_PROPERTIES, _PROPERTIES + member + b",", 1)
    else:  # properties removed by the missing-fields chaos: the member goes top-level
        items[i] = b"{" + member + b"," + item[1:]
    return True


def envelope(items: list[bytes], pagination: dict | None, no_pagination: str | None, meta: dict) -> bytes:
    """`{"data":[…],"pagination":{…},"meta":{…}}`; `no_pagination` damages the pagination object."""
    if no_pagination == "missing":
        pag = b""
    elif no_pagination == "null":
        pag = b'"pagination":null,'
    elif no_pagination == "empty":
        pag = b'"pagination":{},'
    else:
        pag = b'"pagination":' + orjson.dumps(pagination) + b","
    return b'{"data":[' + b",".join(items) + b"]," + pag + b'"meta":' + orjson.dumps(meta) + b"}"
