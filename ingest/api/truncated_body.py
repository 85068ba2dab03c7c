"""Whole events out of a body cut off mid-JSON (the feed's truncated 200s): the page up to its last whole event.

The server spent a page's latency and a request of the budget on that body; everything before the cut
is as good as a whole page's events. A JSON value that decodes is complete — an event cut anywhere
loses at least its closing brace — so the events before the cut are exact, and the one cut through is
dropped (the next page starts before it). Only the top-level object is walked; each value is parsed
once more by tolerant_json, so salvaged events are stored exactly as a whole page's would be.
"""

from __future__ import annotations

import json

from ingest.api import tolerant_json

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def whole_events_prefix(content: bytes) -> dict | None:
    """The top-level members of a cut-off events body that are whole, `data` holding its whole events.

    None when the cut comes before `data`'s first whole event, or the body is no cut-off JSON object.
    """
    text = _decodable_prefix(content)
    if text is None:
        return None
    end, inside_data = _whole_end(text)
    if end is None:
        return None
    body = tolerant_json.loads((text[:end] + ("]}" if inside_data else "}")).encode())
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
        return None
    return body


def _decodable_prefix(content: bytes) -> str | None:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(content) - 3:  # not a character cut in two at the end: no UTF-8 to salvage
            return None
        return content[:exc.start].decode("utf-8")


def _whole_end(text: str) -> tuple[int | None, bool]:
    """Where the whole members of the top-level object end (None: none with `data`), and whether the cut
    fell inside `data` (its `]` is then missing too)."""
    i = _skip(text, 0)
    if not text.startswith("{", i):
        return None, False
    i += 1
    end, seen_data = None, False
    while True:
        i = _skip(text, i)
        try:
            key, i = _DECODER.raw_decode(text, i)
        except ValueError:
            return end, False
        i = _skip(text, i)
        if not isinstance(key, str) or not text.startswith(":", i):
            return end, False
        i = _skip(text, i + 1)
        if key == "data":
            seen_data = True
            list_end, closed = _list_end(text, i)
            if list_end is None or not closed:
                return list_end, True
            i = list_end
        else:
            try:
                _, i = _DECODER.raw_decode(text, i)
            except ValueError:
                return end, False
        if seen_data:
            end = i
        i = _skip(text, i)
        if not text.startswith(",", i):
            return end, False
        i += 1


def _list_end(text: str, i: int) -> tuple[int | None, bool]:
    """(End of the list's last whole value, True) when the list is whole; (end of its last whole value or
    None, False) when the cut falls inside it."""
    if not text.startswith("[", i):
        return None, False
    end: int | None = None
    i += 1
    while True:
        i = _skip(text, i)
        if text.startswith("]", i):
            return i + 1, True
        try:
            _, i = _DECODER.raw_decode(text, i)
        except ValueError:
            return end, False  # the cut: the list holds the values before it
        end = i
        i = _skip(text, i)
        if text.startswith(",", i):
            i += 1
        elif not text.startswith("]", i):
            return end, False


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i
