"""The HTTP boundary: status codes and bodies mapped to our errors (responses, no network)."""

import threading
import time

import orjson
import pytest
import requests
import responses

from datasync_sim import cursor as sim_cursor
from ingest.api.client import CONNECT_TIMEOUT_S, ApiClient, parse_envelope
from ingest.api.cursors import ZERO_ID, build_cursor
from ingest.api.retry_policy import RetryPolicy
from ingest.api.server_clock import ServerClock
from ingest.errors import (
    AnswerTimedOut,
    AuthenticationFailed,
    CursorExpired,
    CursorRejected,
    FatalApiError,
    RateLimited,
    RetryableApiError,
    StreamAccessDenied,
    StreamTokenInvalid,
)
from tests.fix_clock import FakeClock

BASE = "http://api.test"
KEY = "ds_" + "a" * 32


def make_client(server_clock: ServerClock | None = None) -> ApiClient:
    return ApiClient(BASE, KEY, 5.0, RetryPolicy(), server_clock)


def envelope(data, has_more=True, cursor="abc", total=3):
    return {"data": data, "pagination": {"limit": 5000, "hasMore": has_more, "nextCursor": cursor,
                                         "cursorExpiresIn": 116}, "meta": {"total": total, "returned": len(data)}}


@pytest.mark.parametrize(
    ("status", "body", "headers", "error"),
    [
        (429, {"code": "RATE_LIMIT_EXCEEDED"}, {"Retry-After": "7"}, RateLimited),
        (500, {"error": "x"}, {}, RetryableApiError),
        (502, None, {"Server": "awselb/2.0"}, RetryableApiError),
        (503, None, {}, RetryableApiError),
        (504, None, {}, RetryableApiError),
        (400, {"code": "CURSOR_EXPIRED", "message": "Cursor expired 3 minute(s) ago"}, {}, CursorExpired),
        (400, {"code": "CURSOR_INVALID_FORMAT"}, {}, CursorRejected),
        (400, {"code": "SOMETHING_ELSE"}, {}, FatalApiError),
        (401, {"error": "Unauthorized"}, {}, AuthenticationFailed),
        (403, {"code": "INVALID_STREAM_TOKEN"}, {}, StreamTokenInvalid),
        (403, {"code": "DASHBOARD_REQUIRED"}, {}, StreamAccessDenied),
        (403, {"code": "FORBIDDEN"}, {}, FatalApiError),
        (404, {"code": "ENDPOINT_NOT_FOUND"}, {}, FatalApiError),
    ],
)
@responses.activate
def test_status_codes_map_to_what_the_caller_must_do(status, body, headers, error) -> None:
    payload = orjson.dumps(body) if body is not None else b"<html>bad gateway</html>"
    responses.get(f"{BASE}/api/v1/events", body=payload, status=status, headers=headers)
    with pytest.raises(error) as caught:
        make_client().events_page("/api/v1/events", {"limit": 5000})
    assert type(caught.value) is error


@responses.activate
def test_429_carries_retry_after_from_header_or_body() -> None:
    responses.get(f"{BASE}/a", status=429, headers={"Retry-After": "7"}, json={})
    responses.get(f"{BASE}/b", status=429, json={"rateLimit": {"retryAfter": 3, "limit": 10}})
    client = make_client()
    waits = []
    for path in ("/a", "/b"):
        with pytest.raises(RateLimited) as caught:
            client.request("GET", path)
        waits.append((caught.value.retry_after, caught.value.limit))
    assert waits == [(7.0, None), (3.0, 10)]  # the bucket's size where the body names it (the contract's example)


@responses.activate
def test_401_message_names_the_variable_but_never_the_key() -> None:
    responses.get(f"{BASE}/api/v1/events", status=401, json={"error": "Unauthorized", "message": "Invalid API key"})
    with pytest.raises(FatalApiError) as caught:
        make_client().events_page("/api/v1/events", {})
    assert "API_KEY" in str(caught.value) and KEY not in str(caught.value)


@responses.activate
def test_connection_errors_and_timeouts_are_retryable() -> None:
    responses.get(f"{BASE}/reset", body=requests.ConnectionError("reset by peer"))
    responses.get(f"{BASE}/slow", body=requests.ReadTimeout("slow"))
    client = make_client()
    for path in ("/reset", "/slow"):
        with pytest.raises(RetryableApiError):
            client.request("GET", path)


@responses.activate
def test_a_page_waits_as_long_as_its_caller_says_and_a_held_answer_is_told_apart() -> None:
    responses.get(f"{BASE}/api/v1/events", json=envelope([]))
    responses.get(f"{BASE}/held", body=requests.ReadTimeout("held"))
    client = make_client()
    client.events_page("/api/v1/events", {"limit": 5000}, read_timeout_s=7.5)
    client.events_page("/api/v1/events", {"limit": 5000})
    assert [call.request.req_kwargs["timeout"] for call in responses.calls] == [(CONNECT_TIMEOUT_S, 7.5),
                                                                                (CONNECT_TIMEOUT_S, 5.0)]
    with pytest.raises(AnswerTimedOut):
        client.request("GET", "/held")


@responses.activate
def test_rate_limit_headers_reach_the_budget_that_sent_and_the_key_is_sent() -> None:
    seen: list[tuple] = []
    responses.get(f"{BASE}/api/v1/events", json=envelope([]),
                  headers={"X-RateLimit-Limit": "10", "X-RateLimit-Remaining": "9", "X-RateLimit-Reset": "59"})
    make_client().events_page("/api/v1/events", {"limit": 5000}, observe=lambda *limits: seen.append(limits))
    assert seen == [(10, 9, 59.0)]
    assert responses.calls[0].request.headers["X-API-Key"] == KEY


@responses.activate
def test_query_auth_sends_the_key_as_a_parameter_and_not_as_the_header() -> None:
    responses.get(f"{BASE}/api/v1/events", json=envelope([]))
    make_client().events_page("/api/v1/events", {"limit": 5}, query_auth=True)
    sent = responses.calls[0].request
    assert "X-API-Key" not in sent.headers
    assert sent.url == f"{BASE}/api/v1/events?limit=5&api_key={KEY}"


@responses.activate
def test_stream_access_looks_like_the_dashboard_and_reads_the_feed_path() -> None:
    responses.post(f"{BASE}/internal/dashboard/stream-access", json={"streamAccess": {
        "endpoint": "/feed/x", "token": "f" * 64, "expiresIn": 300, "tokenHeader": "X-Stream-Token"}})
    grant = make_client().stream_access()
    sent = responses.calls[0].request.headers
    got = (grant.endpoint, grant.token, grant.header, grant.expires_in_s)
    assert got == ("/feed/x", "f" * 64, "X-Stream-Token", 300)
    assert sent["User-Agent"].startswith("Mozilla/5.0")
    assert (sent["Origin"], sent["Cookie"]) == (BASE, f"dashboard_api_key={KEY}")


@pytest.mark.parametrize(
    "content",
    [
        orjson.dumps(envelope([{"id": "x"}]))[:-7],  # cut mid-JSON with status 200
        b"",
        orjson.dumps({"data": [], "meta": {}}),  # no pagination: damaged, not the end
        orjson.dumps({"data": [], "pagination": {"hasMore": "yes"}}),
        orjson.dumps({"data": [], "pagination": {"hasMore": True, "nextCursor": None}}),
        orjson.dumps({"pagination": {"hasMore": False}}),
    ],
)
def test_damaged_envelopes_are_retryable_never_the_end(content: bytes) -> None:
    with pytest.raises(RetryableApiError):
        parse_envelope(content)


@pytest.mark.parametrize("pagination", [None, {"hasMore": "yes"}, {"hasMore": True, "nextCursor": None}, "gone"])
def test_a_full_page_with_damaged_pagination_keeps_its_events(pagination: object) -> None:
    body = envelope([{"id": str(i)} for i in range(3)])
    if pagination == "gone":
        del body["pagination"]
    else:
        body["pagination"] = pagination
    page = parse_envelope(orjson.dumps(body), asked=3)
    assert (len(page.events), page.has_more, page.next_cursor, page.pagination_damaged) == (3, True, None, True)
    with pytest.raises(RetryableApiError, match="pagination|nextCursor"):
        parse_envelope(orjson.dumps(body), asked=4)  # short: maybe cut, maybe the end; asked again


def last_page(*events: bytes) -> bytes:
    """An end-of-data envelope around raw event JSON, so the test controls every byte."""
    return b'{"data":[' + b",".join(events) + b'],"pagination":{"hasMore":false,"nextCursor":null},"meta":{}}'


@pytest.mark.parametrize(
    ("event", "stored"),
    [
        # a JavaScript server's broken emoji: half a surrogate pair, escaped
        (rb'{"name":"broken \ud83d emoji"}', '{"name":"broken \ufffd emoji"}'.encode()),
        (rb'{"name":"\ude00\ud83d"}', '{"name":"\ufffd\ufffd"}'.encode()),
        (rb'{"\udc00key":["\ud83d\ude00","\ud83d"]}', '{"\ufffdkey":["\U0001f600","\ufffd"]}'.encode()),
        (b'{"name":"\xed\xa0\xbd"}', '{"name":"\ufffd"}'.encode()),  # the same half, raw (CESU-8)
        # numbers JSON has no room for: kept as the token the server sent
        (b'{"v":[NaN,Infinity,-Infinity]}', b'{"v":["NaN","Infinity","-Infinity"]}'),
        # past a double, or past 64 bits: kept exact, as written
        (b'{"v":[1e400,-1.5E+400,0.5]}', b'{"v":[1e400,-1.5E+400,0.5]}'),
        (b'{"v":[18446744073709551616,-9223372036854775809]}', b'{"v":[18446744073709551616,-9223372036854775809]}'),
        (b'{"v":123456789012345678901234567890}', b'{"v":123456789012345678901234567890}'),
        (b'{"v":[18446744073709551615,-9223372036854775808]}', b'{"v":[18446744073709551615,-9223372036854775808]}'),
        # beyond what jsonb's numeric holds: kept as text rather than failing the whole batch
        (b'{"v":1e131072}', b'{"v":"1e131072"}'),
        (b'{"v":' + b"9" * 5000 + b"}", b'{"v":' + b"9" * 5000 + b"}"),
    ],
    ids=["lone-high-surrogate", "lone-low-surrogates", "in-key-and-list-pair-intact", "raw-cesu8-surrogate",
         "nan-infinities", "past-a-double", "past-64-bits", "30-digits", "64-bit-edges", "past-jsonb-numeric",
         "5000-digits"],
)
def test_json_orjson_refuses_or_rounds_is_parsed_and_the_event_kept(event: bytes, stored: bytes) -> None:
    page = parse_envelope(last_page(event, b'{"id":"next"}'))
    assert orjson.dumps(page.events) == b"[" + stored + b',{"id":"next"}]'
    assert (page.has_more, page.next_cursor) == (False, None)


def test_a_long_digit_run_takes_the_exact_path_with_the_same_result() -> None:
    events = [{"id": "1" * 40, "n": 1769541612369, "f": 0.1, "s": "caf\u00e9", "t": [True, None]}]
    page = parse_envelope(orjson.dumps(envelope(events, has_more=False, cursor=None)))
    assert page.events == events


@pytest.mark.parametrize(
    "content",
    [
        last_page(b'{"v":NaN}')[:-9],  # cut mid-JSON: no parser accepts it, tolerant or not
        last_page(b'{"name":"\xff"}'),  # not UTF-8
        b"[" * 100_000,  # nested past every parser's depth
    ],
)
def test_a_body_no_parser_accepts_is_retryable(content: bytes) -> None:
    with pytest.raises(RetryableApiError, match="invalid or truncated JSON body"):
        parse_envelope(content)


@pytest.mark.parametrize(
    "content",
    [
        last_page(b'{"name":"\xff"}'),
        b"[" * 100_000,
        orjson.dumps(envelope([{"id": "a"}, {"id": "b"}]))[:12],  # cut before the first whole event
    ],
)
def test_a_chain_keeps_nothing_of_a_body_without_whole_events(content: bytes) -> None:
    with pytest.raises(RetryableApiError, match="invalid or truncated JSON body"):
        parse_envelope(content, keep_cut_off=True)


def test_a_chain_keeps_the_whole_events_of_a_cut_off_body_and_goes_on_after_them() -> None:
    whole = orjson.dumps(envelope([{"id": "a"}, {"id": "b"}, {"id": "c"}]))
    cut = whole[:whole.index(b'{"id":"c"') + 5]
    page = parse_envelope(cut, asked=5000, keep_cut_off=True)
    assert (page.events, page.has_more, page.next_cursor, page.total, page.pagination_damaged, page.truncated) == (
        [{"id": "a"}, {"id": "b"}], True, None, None, True, True)
    with pytest.raises(RetryableApiError, match="invalid or truncated JSON body"):
        parse_envelope(cut, asked=5000)  # one-request questions (meta.total, an anchor) need the whole body


def test_a_body_cut_in_its_meta_is_a_whole_page() -> None:
    whole = orjson.dumps(envelope([{"id": "a"}], has_more=True, cursor="abc"))
    page = parse_envelope(whole[:whole.index(b'"meta"') + 9], keep_cut_off=True)
    assert (page.events, page.has_more, page.next_cursor, page.pagination_damaged, page.truncated) == (
        [{"id": "a"}], True, "abc", False, False)


def test_end_of_data_envelope() -> None:
    page = parse_envelope(orjson.dumps(envelope([{"id": "x"}], has_more=False, cursor=None)))
    assert (page.events, page.has_more, page.next_cursor, page.total) == ([{"id": "x"}], False, None, 3)


@responses.activate
def test_invalid_stream_token_renews_the_token_and_the_request_is_sent_again() -> None:
    import threading

    from ingest.api.sources import FeedSource, StreamTokens
    from ingest.budgets.sender import RetryLoop
    from ingest.budgets.throttle import Throttle
    from ingest.stats import Stats

    grant = {"endpoint": "/feed", "expiresIn": 300, "tokenHeader": "X-Stream-Token"}
    responses.post(f"{BASE}/internal/dashboard/stream-access", json={"streamAccess": {**grant, "token": "b" * 64}})
    responses.get(f"{BASE}/feed", status=403, json={"code": "INVALID_STREAM_TOKEN"})
    responses.get(f"{BASE}/feed", json=envelope([{"id": "x"}], has_more=False, cursor=None))
    client = make_client()
    first = client.stream_access()
    responses.calls.reset()
    source = FeedSource(client, StreamTokens(client, first), 5000)
    requester = RetryLoop(Throttle("test"), RetryPolicy(), Stats(), threading.Event())
    page = requester.call(lambda: source.page(None, None, None), "feed")
    tokens_sent = [c.request.headers.get("X-Stream-Token") for c in responses.calls if "/feed" in c.request.url]
    assert page.events == [{"id": "x"}]
    assert tokens_sent == ["b" * 64, "b" * 64]  # the second token is the renewed one (same text here)
    assert [c.request.url.rsplit("/", 1)[-1] for c in responses.calls] == ["feed?limit=5000", "stream-access",
                                                                          "feed?limit=5000"]


SERVER_NOW_S = 1_769_541_600  # Tue, 27 Jan 2026 19:20:00 GMT
LOCAL_WALL_S = SERVER_NOW_S - 600.0  # our wall clock runs ten minutes behind the server's


# Local clocks that do not move: the wall one ten minutes behind the server's.
STOPPED = FakeClock(start=0.0, wall_at_start=LOCAL_WALL_S)


@responses.activate
def test_a_cursor_built_after_any_answer_expires_on_the_servers_clock() -> None:
    responses.get(f"{BASE}/api/v1/events", json=envelope([], has_more=False, cursor=None),
                  headers={"Date": "Tue, 27 Jan 2026 19:20:00 GMT"})
    client = make_client(server_clock=ServerClock(wall=STOPPED.wall, clock=STOPPED.mono))
    client.events_page("/api/v1/events", {"limit": 5000})
    rebuilt = build_cursor(1769541612369, ZERO_ID, now_ms=client.server_clock.now_ms())
    # the server checks exp against its own clock: the rebuilt cursor is alive there ...
    assert sim_cursor.decode(rebuilt, SERVER_NOW_S * 1000).exp == (SERVER_NOW_S + 117) * 1000
    # ... where one built on the local clock arrives expired, however often it is rebuilt
    stale = build_cursor(1769541612369, ZERO_ID, now_ms=int(LOCAL_WALL_S * 1000))
    with pytest.raises(sim_cursor.CursorError, match="expired"):
        sim_cursor.decode(stale, SERVER_NOW_S * 1000)


@responses.activate
def test_the_servers_own_cursor_sets_the_server_clock() -> None:
    issued = sim_cursor.encode(1769541612369, ZERO_ID, (SERVER_NOW_S + 118) * 1000)
    body = envelope([{"id": "x"}], cursor=issued)
    body["pagination"]["cursorExpiresIn"] = 118
    responses.get(f"{BASE}/api/v1/events", json=body)  # no Date header at all
    client = make_client(server_clock=ServerClock(wall=STOPPED.wall, clock=STOPPED.mono))
    page = client.events_page("/api/v1/events", {"limit": 5000})
    assert (page.next_cursor, page.cursor_expires_in_s) == (issued, 118.0)
    assert client.server_clock.now_ms() == SERVER_NOW_S * 1000


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@responses.activate
def test_a_redirect_is_not_followed_so_the_key_goes_to_no_other_host(status: int) -> None:
    responses.get(f"{BASE}/api/v1/events", status=status, headers={"Location": "http://elsewhere.test/collect?k=1"})
    responses.get("http://elsewhere.test/collect", json=envelope([], has_more=False, cursor=None))
    with pytest.raises(FatalApiError, match=r"redirected /api/v1/events to http://elsewhere.test \(HTTP") as caught:
        make_client().events_page("/api/v1/events", {"limit": 5000})
    assert type(caught.value) is FatalApiError and "key was not sent there" in str(caught.value)
    assert [c.request.url for c in responses.calls] == [f"{BASE}/api/v1/events?limit=5000"]


@responses.activate
def test_a_redirect_on_the_same_host_is_refused_too_and_names_the_target() -> None:
    responses.post(f"{BASE}/internal/dashboard/stream-access", status=308, headers={"Location": "/v2/stream-access"})
    responses.post(f"{BASE}/v2/stream-access", json={})
    with pytest.raises(FatalApiError, match=r"redirected /internal/dashboard/stream-access to http://api.test "):
        make_client().stream_access()
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://evil.test/feed", "https://evil.test/feed", "//evil.test/feed", "@evil.test/feed",
        "evil.test/feed", "feed", "", "/api/v1/../../admin", "/api/v1/%2E%2E/admin", "\\\\evil.test\\feed",
        "/api\\..\\feed", "/feed?redirect=http://evil.test", "/feed#x", "/feed\r\nX-Injected: 1", "/feed x",
    ],
)
@responses.activate
def test_a_feed_path_off_our_host_is_refused_like_a_refused_stream_access(endpoint: str) -> None:
    responses.post(f"{BASE}/internal/dashboard/stream-access", json={"streamAccess": {
        "endpoint": endpoint, "token": "f" * 64, "expiresIn": 300, "tokenHeader": "X-Stream-Token"}})
    with pytest.raises(StreamAccessDenied, match="not a path on http://api.test: refused") as caught:
        make_client().stream_access()
    assert "f" * 64 not in str(caught.value)


@responses.activate
def test_no_repr_shows_the_key_or_the_stream_token() -> None:
    from ingest.api.sources import StreamTokens

    token = "7e" * 32
    responses.post(f"{BASE}/internal/dashboard/stream-access", json={"streamAccess": {
        "endpoint": "/feed", "token": token, "expiresIn": 300, "tokenHeader": "X-Stream-Token"}})
    client = make_client()
    grant = client.stream_access()  # the client now holds a session whose headers carry the key
    shown = [repr(x) for x in (client, grant, StreamTokens(client, grant))]
    assert [KEY in text or token in text for text in shown] == [False, False, False]
    assert shown[:2] == ["ApiClient('http://api.test')",
                         "StreamGrant(endpoint='/feed', header='X-Stream-Token', expires_in_s=300.0)"]


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Retry-After": "7200"}, {"code": "RATE_LIMIT_EXCEEDED"}),
        ({}, {"code": "RATE_LIMIT_EXCEEDED", "rateLimit": {"retryAfter": 7200}}),
        ({"Retry-After": "Tue, 27 Jan 2026 21:20:00 GMT", "Date": "Tue, 27 Jan 2026 19:20:00 GMT"}, {}),
    ],
)
@responses.activate
def test_a_429_asking_for_hours_stops_the_request_instead_of_sleeping(headers: dict, body: dict) -> None:
    import threading

    from ingest.budgets.sender import RetryLoop
    from ingest.budgets.throttle import Throttle
    from ingest.stats import Stats

    responses.get(f"{BASE}/api/v1/events", status=429, headers=headers, json=body)
    client = make_client()
    requester = RetryLoop(Throttle("test"), RetryPolicy(), Stats(), threading.Event())
    with pytest.raises(FatalApiError, match=r"asked us to wait 7200 s before sending again") as caught:
        requester.call(lambda: client.events_page("/api/v1/events", {"limit": 5000}), "events")
    assert not isinstance(caught.value, RetryableApiError)
    assert len(responses.calls) == 1


@pytest.mark.parametrize("retry_after", [-5, "soon", None, [1]])
@responses.activate
def test_a_429_body_without_a_usable_wait_leaves_the_wait_to_backoff(retry_after: object) -> None:
    responses.get(f"{BASE}/a", status=429, json={"rateLimit": {"retryAfter": retry_after}})
    responses.get(f"{BASE}/b", status=429, json={"rateLimit": [retry_after]})
    client = make_client()
    for path in ("/a", "/b"):
        with pytest.raises(RateLimited) as caught:
            client.request("GET", path)
        assert caught.value.retry_after is None


@responses.activate
def test_a_retry_after_date_is_measured_against_the_servers_clock() -> None:
    responses.get(f"{BASE}/api/v1/events", status=429, headers={
        "Date": "Tue, 27 Jan 2026 19:20:00 GMT", "Retry-After": "Tue, 27 Jan 2026 19:20:30 GMT"})
    client = make_client(server_clock=ServerClock(wall=STOPPED.wall, clock=STOPPED.mono))
    with pytest.raises(RateLimited) as caught:
        client.events_page("/api/v1/events", {"limit": 5000})
    assert caught.value.retry_after == 30.0  # not 630 s, as our wall clock ten minutes behind would say


def test_close_closes_the_session_of_every_thread() -> None:
    from datasync_sim import SimServer, profile_config

    with SimServer(profile_config("fast", events=100)) as sim:
        client = ApiClient(sim.url, "ds_" + "0" * 32, 5.0, RetryPolicy())
        threads = [threading.Thread(target=client.events_page, args=("/api/v1/events", {"limit": 1}))
                   for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        open_before = sim.open_connections()
        client.close()
        deadline = time.monotonic() + 5
        while sim.open_connections() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (open_before, sim.open_connections()) == (3, 0)
