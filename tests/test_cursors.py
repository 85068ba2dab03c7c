import base64
import json
import time

from ingest.api.cursors import ZERO_ID, build_cursor, cursor_expiry_ms, decode_cursor


def test_built_cursor_expires_ttl_after_the_given_server_time_and_decodes_back() -> None:
    cursor = build_cursor(1769541612369, "abc", now_ms=1_000_000, ttl_s=117)
    assert json.loads(base64.b64decode(cursor)) == {"id": "abc", "ts": 1769541612369, "v": 2, "exp": 1_117_000}
    assert (decode_cursor(cursor), cursor_expiry_ms(cursor)) == ((1769541612369, "abc"), 1_117_000)


def test_without_a_server_time_the_local_wall_clock_stands_in() -> None:
    before = int(time.time() * 1000)
    exp = cursor_expiry_ms(build_cursor(5, ZERO_ID, ttl_s=117))
    after = int(time.time() * 1000)
    assert exp is not None and before + 117_000 <= exp <= after + 117_000


def test_server_cursor_without_padding_decodes() -> None:
    raw = base64.b64encode(b'{"id":"' + ZERO_ID.encode() + b'","ts":5,"v":2,"exp":9}').decode().rstrip("=")
    assert decode_cursor(raw) == (5, ZERO_ID)


def test_unknown_formats_decode_to_none() -> None:
    assert [decode_cursor(c) for c in (None, "", "!!!", base64.b64encode(b"[1]").decode(),
                                       base64.b64encode(b'{"ts":"x","id":"a"}').decode())] == [None] * 5


def test_expiry_is_none_unless_the_cursor_states_it_in_whole_ms() -> None:
    cursors = [None, "!!!", base64.b64encode(b'{"ts":5,"id":"a"}').decode(),
               base64.b64encode(b'{"exp":"soon"}').decode(), base64.b64encode(b'{"exp":true}').decode()]
    assert [cursor_expiry_ms(c) for c in cursors] == [None] * 5
