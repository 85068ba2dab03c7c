"""Parse a response body into values every later step can store, including JSON that orjson refuses.

orjson is strict where servers are not: a JavaScript server can send a lone surrogate escape (half of
a broken emoji), others write NaN, Infinity or 1e400. Each of these belongs to one event, and the
server sends the same bytes every time, so refusing the page would retry it until the run gives up.
Such a body goes to the stdlib parser instead, and what it returns is made storable: orjson can dump
it and PostgreSQL's jsonb accepts the dump, so the event reaches `ingested_events` like any other.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal

import orjson

# orjson loads integers in [-2**63, 2**64 - 1] exactly but rounds longer ones to floats without a
# word. Every integer outside that range has 19 digits or more, so a body holding such a run of digits
# takes the exact path (slower, and rare: timestamps have 13 digits, UUID groups at most 12).
_LONG_DIGIT_RUN = b"0" * 19
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
I64_MIN, U64_MAX = -(2**63), 2**64 - 1  # the integers orjson dumps
INT64_TEXT_MAX = 20  # characters; both -2**63 and 2**64 - 1 are 20 long
# jsonb stores numbers as numeric: at most 131,072 digits before the decimal point and 16,383 after.
# A number outside that would fail the COPY of its whole batch, so it is stored as a string instead.
JSONB_MAX_INTEGER_DIGITS = 131_072
JSONB_MAX_FRACTION_DIGITS = 16_383
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def loads(content: bytes) -> object:
    """The JSON value of `content`; ValueError when no parser accepts it (cut off, not UTF-8, not JSON).

    Differs from orjson.loads only where orjson refuses or rounds: NaN, Infinity and -Infinity become
    the strings "NaN", "Infinity", "-Infinity" (JSON and jsonb have no such numbers; the string keeps
    what the server sent, and PostgreSQL casts it back with `::float8`); numbers past a double or past
    64-bit integers stay exact, as their original text (an orjson.Fragment, dumped verbatim); a lone
    surrogate becomes U+FFFD, as a UTF-8 encoder would write it.
    """
    if content.translate(_DIGITS_AS_ZERO).find(_LONG_DIGIT_RUN) < 0:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    try:
        return _without_lone_surrogates(
            json.loads(content, parse_constant=str, parse_float=_float, parse_int=_int)
        )
    except RecursionError as exc:  # the stdlib parser's depth limit, or the walk's just under it
        raise ValueError("JSON nested too deeply") from exc


def _float(text: str) -> object:
    value = float(text)
    return value if math.isfinite(value) else _exact(text)


def _int(text: str) -> object:
    # The length test keeps int() away from texts past Python's 4,300-digit conversion limit.
    if len(text) <= INT64_TEXT_MAX and I64_MIN <= (value := int(text)) <= U64_MAX:
        return value
    return _exact(text)


def _exact(text: str) -> object:
    number = Decimal(text)
    fraction_digits = -int(number.as_tuple().exponent)  # a JSON number is finite: the exponent is an int
    if number.adjusted() < JSONB_MAX_INTEGER_DIGITS and fraction_digits <= JSONB_MAX_FRACTION_DIGITS:
        return orjson.Fragment(text)
    return text


def _without_lone_surrogates(value: object) -> object:
    # The stdlib joins escaped surrogate pairs into one character, so any surrogate left is alone,
    # and orjson cannot encode it.
    if isinstance(value, str):
        return value if value.isascii() else _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    return value
