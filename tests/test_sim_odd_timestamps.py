"""Odd timestamps: a share of events on /api/v1/events served in lossy or zone-less forms, order intact."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

from tests.fix_sim import client, decode_cursor, events_page, read_all, running, stream_token

ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _form(value, true_ms: int) -> str:
    """Which form `value` is, asserting it renders `true_ms` in that form."""
    iso = _iso(true_ms)
    forms = {
        "epoch_ms": true_ms, "iso": iso, "date_only": iso[:10], "hour_only": iso[:13],
        "lowercase_z": iso[:-1] + "z", "float_ms": float(true_ms), "epoch_seconds": true_ms // 1000,
        "no_timezone": iso[:-1], "zero_width": "\u200b" + iso,
    }
    found = [name for name, rendered in forms.items()
             if value == rendered and type(value) is type(rendered)]
    assert len(found) == 1, (value, true_ms)
    return found[0]


def _feed(s, url) -> list[dict]:
    token = stream_token(s, url)
    return read_all(s, url, path=token["endpoint"], limit=2_000, headers={"X-Stream-Token": token["token"]})


def test_odd_timestamps_come_at_the_configured_rate_in_every_form_while_order_follows_the_true_time():
    with running(events=6_000, odd_timestamps=0.25) as sim:
        s = client()
        listed = read_all(s, sim.url, limit=700)
        relisted = read_all(s, sim.url, limit=1_100)
        truth = _feed(s, sim.url)  # the feed keeps epoch ms: the true timestamps
    true_ms = {e["id"]: e["timestamp"] for e in truth}
    forms = [_form(e["timestamp"], true_ms[e["id"]]) for e in listed]
    odd = Counter(f for f in forms if f not in ("epoch_ms", "iso"))
    assert [e["id"] for e in listed] == [e["id"] for e in truth]
    assert 0.22 * 6_000 < sum(odd.values()) < 0.28 * 6_000
    assert set(odd) == {"date_only", "hour_only", "lowercase_z", "float_ms", "epoch_seconds", "no_timezone",
                        "zero_width"}
    assert min(odd.values()) > 100
    # fixed per event, whatever the page size or the position in the page
    odd_ids = {e["id"]: e["timestamp"] for e, f in zip(listed, forms, strict=True) if f in odd}
    assert {e["id"]: e["timestamp"] for e in relisted if e["id"] in odd_ids} == odd_ids


def test_the_next_cursor_after_an_odd_timestamp_holds_the_true_time():
    with running(events=3_000, odd_timestamps=0.5) as sim:
        s = client()
        page = events_page(s, sim.url, limit=100)
        truth = _feed(s, sim.url)
        date_only = next(i for i, e in enumerate(page["data"]) if re.fullmatch(r"\d{4}-\d\d-\d\d", str(e["timestamp"])))
        cut = events_page(s, sim.url, limit=date_only + 1)
        rest = events_page(s, sim.url, limit=50, cursor=cut["pagination"]["nextCursor"])
    last = cut["data"][-1]
    assert decode_cursor(cut["pagination"]["nextCursor"])["ts"] == truth[date_only]["timestamp"] != last["timestamp"]
    assert [e["id"] for e in rest["data"]] == [e["id"] for e in truth[date_only + 1:date_only + 51]]


def test_off_by_default_and_never_on_the_feed():
    with running(events=1_500) as plain, running(events=1_500, odd_timestamps=1.0) as odd:
        s = client()
        forms = {type(e["timestamp"]).__name__ + (":Z" if ISO_Z.fullmatch(str(e["timestamp"])) else "")
                 for e in read_all(s, plain.url, limit=500)}
        feed = _feed(s, odd.url)
    assert forms == {"int", "str:Z"}
    assert {type(e["timestamp"]) for e in feed} == {int}
