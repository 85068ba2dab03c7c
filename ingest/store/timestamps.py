"""Normalise the API's many timestamp forms to epoch milliseconds (UTC, exact)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# Plausibility window: 2000-01-01 .. 2100-01-01. It separates epoch seconds (10 digits) from epoch
# milliseconds (13 digits) without ambiguity and rejects numbers that are not times at all (0, -1, ids).
MIN_MS = 946_684_800_000
MAX_MS = 4_102_444_800_000
MIN_S = MIN_MS // 1000
MAX_S = MAX_MS // 1000

# Whitespace plus the invisible characters seen in scraped strings: zero-width space/joiners, BOM,
# word joiner, no-break space.
_STRIP = " \t\r\n\v\f\u200b\u200c\u200d\u2060\ufeff\u00a0"
_DIGITS = re.compile(r"[+-]?\d+(\.\d+)?")
_CAPTURED_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _from_number(value: float) -> int | None:
    if MIN_MS <= value < MAX_MS:
        return int(round(value)) if isinstance(value, float) else int(value)
    if MIN_S <= value < MAX_S:
        return int(round(value * 1000))
    return None


def parse_timestamp_ms(value: object) -> int | None:
    """Epoch milliseconds for an API timestamp, or None when the value is not a time.

    Accepts epoch ms or epoch seconds (numbers or digit strings) and ISO-8601 strings with `Z`, an
    offset, or no zone (read as UTC, the API's zone), with surrounding whitespace or invisible
    characters. Sub-millisecond digits are truncated, never rounded into the next millisecond.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _from_number(value)
    if not isinstance(value, str):
        return None
    text = value.strip(_STRIP)
    if not text:
        return None
    if _DIGITS.fullmatch(text):
        return _from_number(float(text) if "." in text else int(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    millis = (moment - _EPOCH) // _MILLISECOND
    return millis if MIN_MS <= millis < MAX_MS else None



def in_captured_form(value: object) -> bool:
    """True for the two forms captured from the live API: epoch ms as an integer, ISO-8601 UTC with ms.

    Either names its millisecond exactly. The other forms parse too, but a date without its time, a time
    without its milliseconds or a zone-less local time may stand below the event's true place.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return MIN_MS <= value < MAX_MS
    return isinstance(value, str) and _CAPTURED_ISO.fullmatch(value) is not None
