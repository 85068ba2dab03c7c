import base64
import json

from ingest.cursors import ZERO_ID, build_cursor, decode_cursor


def test_built_cursor_has_the_api_format_and_decodes_back() -> None:
    cursor = build_cursor(1769541612369, "abc", wall=lambda: 1_000.0, ttl_s=117)
    assert json.loads(base64.b64decode(cursor)) == {"id": "abc", "ts": 1769541612369, "v": 2, "exp": 1_117_000}
    assert decode_cursor(cursor) == (1769541612369, "abc")


def test_server_cursor_without_padding_decodes() -> None:
    raw = base64.b64encode(b'{"id":"' + ZERO_ID.encode() + b'","ts":5,"v":2,"exp":9}').decode().rstrip("=")
    assert decode_cursor(raw) == (5, ZERO_ID)


def test_unknown_formats_decode_to_none() -> None:
    assert [decode_cursor(c) for c in (None, "", "!!!", base64.b64encode(b"[1]").decode(),
                                       base64.b64encode(b'{"ts":"x","id":"a"}').decode())] == [None] * 5
