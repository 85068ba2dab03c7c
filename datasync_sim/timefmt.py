"""Timestamp text forms: ISO-8601 UTC with milliseconds and the chaos variants of one instant."""

from __future__ import annotations

import datetime as dt

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MINUTE_MS = 60_000
_minutes: dict[int, str] = {}  # minute number -> "2026-01-27T19:19:"; ~43K entries for 30 days
_IN_MINUTE = [f"{s:02d}.{ms:03d}Z" for s in range(60) for ms in range(1000)]  # ~3.5 MB


def iso_ms(ts: int) -> str:
    """`ts` (epoch ms) as `2026-01-27T19:19:13.629Z`."""
    minute, rem = divmod(ts, _MINUTE_MS)
    prefix = _minutes.get(minute)
    if prefix is None:
        prefix = (_EPOCH + dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:")
        _minutes[minute] = prefix
    return prefix + _IN_MINUTE[rem]


_days_json: dict[int, bytes] = {}  # day number -> b'"2026-01-27T'
_HM_JSON = [f"{h:02d}:{m:02d}:".encode() for h in range(24) for m in range(60)]
_SM_JSON = [(t + '"').encode() for t in _IN_MINUTE]  # b'13.629Z"'


def iso_json(ts: int) -> bytes:
    """`ts` as the JSON string `"2026-01-27T19:19:13.629Z"` (bytes, quotes included)."""
    minute, rem = divmod(ts, _MINUTE_MS)
    day, minute_of_day = divmod(minute, 1440)
    prefix = _days_json.get(day)
    if prefix is None:
        prefix = b'"' + (_EPOCH + dt.timedelta(days=day)).strftime("%Y-%m-%dT").encode()
        _days_json[day] = prefix
    return prefix + _HM_JSON[minute_of_day] + _SM_JSON[rem]


def iso_offset(ts: int, offset_minutes: int) -> str:
    """`ts` as ISO-8601 in a `+hh:mm`/`-hh:mm` offset zone, milliseconds kept; the same instant."""
    tz = dt.timezone(dt.timedelta(minutes=offset_minutes))
    local = (_EPOCH + dt.timedelta(milliseconds=ts)).astimezone(tz)
    return local.isoformat(timespec="milliseconds")


# JSON values (bytes) of the variant forms; each is the same instant as `ts`, or None to skip.
VARIANTS = ("epoch_seconds", "digit_string", "iso_offset", "whitespace", "zero_width")


def variant_json(ts: int, kind: str) -> bytes | None:
    """The JSON value of timestamp `ts` in variant `kind`; None when the variant cannot hold it."""
    if kind == "epoch_seconds":
        return str(ts // 1000).encode() if ts % 1000 == 0 else None
    if kind == "digit_string":
        return b'"%d"' % ts
    if kind == "iso_offset":
        return b'"' + iso_offset(ts, 120 if ts % 2 else -300).encode() + b'"'
    if kind == "whitespace":
        return b'" ' + iso_ms(ts).encode() + b' "'
    if kind == "zero_width":
        return b'"\\u200b' + iso_ms(ts).encode() + b'"'
    raise ValueError(f"unknown timestamp variant {kind!r}")


# `odd_timestamps` forms (contract §5: reported but never captured, or ambiguous): lossy or zone-less
ODD_FORMS = ("date_only", "hour_only", "lowercase_z", "float_ms", "epoch_seconds", "no_timezone", "zero_width")
_ZWSP = "\u200b".encode()


def odd_json(ts: int, kind: str) -> bytes:
    """The JSON value of timestamp `ts` in odd form `kind`; date_only, hour_only and epoch_seconds
    drop precision, so the value no longer tells the event's place in the order."""
    if kind == "float_ms":
        return b"%d.0" % ts
    if kind == "epoch_seconds":
        return b"%d" % (ts // 1000)
    iso = iso_ms(ts)
    text = {"date_only": iso[:10], "hour_only": iso[:13], "lowercase_z": iso[:-1] + "z",
            "no_timezone": iso[:-1]}.get(kind)
    if text is not None:
        return b'"' + text.encode() + b'"'
    if kind == "zero_width":
        return b'"' + _ZWSP + iso.encode() + b'"'
    raise ValueError(f"unknown odd timestamp form {kind!r}")
