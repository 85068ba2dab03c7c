"""Helpers for the simulator tests: start an in-process server, read pages, build cursors."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator

import requests

from datasync_sim import SimServer, profile_config
from tests.fix_clock import FakeClock

KEY = "ds_0123456789abcdef0123456789abcdef"
OTHER_KEY = "ds_fedcba9876543210fedcba9876543210"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


class SimClock(FakeClock):
    """The simulator's clocks, moved only by the test: no time passes between two requests unless it says so.

    Monotonic seconds drive rate-limit windows, the feed's bucket, key and token lifetimes; the wall
    clock (epoch ms, the same instant) drives cursor expiry. It starts a little after the newest event.
    """

    def __init__(self) -> None:
        super().__init__(wall_at_start=1_769_541_700.0)


@contextlib.contextmanager
def running(profile: str = "fast", clock: SimClock | None = None, **overrides) -> Iterator[SimServer]:
    """A simulator in this process; with `clock`, its time is the test's (see SimClock)."""
    overrides.setdefault("events", 2_000)
    overrides.setdefault("seed", 7)
    server = SimServer(profile_config(profile, **overrides), clock=clock,
                       wall_ms=clock.wall_ms if clock is not None else None)
    with server as sim:
        yield sim


HOLD_GUARD_S = 120  # s; a held request is let through after this anyway: it turns a hang into a failure


def hold_after(server: SimServer, events: int) -> threading.Event:
    """Hold every API request once the simulator has served `events` events, until the returned event is set.

    A run against it cannot finish while held, however fast the machine: what it fetched before gets
    committed, and a test can stop, kill or inspect the run knowing it is mid-way. Set the event (after
    the signal, the kill, the change) to let the held requests through; later ones are not held.
    """
    release = threading.Event()
    served = 0
    lock = threading.Lock()
    handle = server.app.handle

    def held(req):
        nonlocal served
        with lock:
            hold = served >= events and not req.path.startswith("/__sim/")
        if hold:
            release.wait(HOLD_GUARD_S)
        resp = handle(req)
        with lock:
            served += resp.events
        return resp

    server.app.handle = held
    return release


class Gate:
    """Like hold_after, but armed again for each run of a test: `hold_after(n)` holds every API request once
    the simulator has served n more events, `release()` lets the held ones through and disarms.

    A test that kills a run while `wait_held()` says a request waits at the gate knows the run was mid-way
    (it could not have ended), however fast or slow the machine.
    """

    def __init__(self, server: SimServer) -> None:
        self._changed = threading.Condition()
        self._served = 0
        self._hold_from: int | None = None  # served count from which requests wait; None: disarmed
        self._waiting = 0
        handle = server.app.handle

        def gated(req):
            if not req.path.startswith("/__sim/"):
                with self._changed:
                    if self._held():
                        self._waiting += 1
                        self._changed.notify_all()
                        self._changed.wait_for(lambda: not self._held(), HOLD_GUARD_S)
                        self._waiting -= 1
            resp = handle(req)
            with self._changed:
                self._served += resp.events
            return resp

        server.app.handle = gated

    def _held(self) -> bool:
        return self._hold_from is not None and self._served >= self._hold_from

    def hold_after(self, events: int) -> None:
        with self._changed:
            self._hold_from = self._served + events

    def wait_held(self, timeout_s: float = 60.0) -> None:
        """Until a request waits at the gate (a guard against a hang: the wait ends on the gate's state)."""
        with self._changed:
            assert self._changed.wait_for(lambda: self._waiting > 0, timeout_s), (
                f"no request reached the gate within {timeout_s} s")

    def release(self) -> None:
        with self._changed:
            self._hold_from = None
            self._changed.notify_all()


class InFlight:
    """Records, for each request to the feed, how many feed requests were in flight and how many answered
    when it arrived; `arm()` starts a new record (for the run about to start).

    A request is in flight until its modelled latency is over; its answer is counted before the simulator
    sends it, so a client can never have read an answer the record still counts as in flight.
    """

    def __init__(self, server: SimServer) -> None:
        self._lock = threading.Condition()
        self._feed = server.app.cfg.feed_path.rstrip("/")
        self._in_flight = self._answered = 0
        self.arrivals: list[tuple[int, int]] | None = None  # (in flight, answered) at each arrival; None: off
        handle = server.app.handle

        def recorded(req):
            if req.path.rstrip("/") != self._feed:
                return handle(req)
            with self._lock:
                if self.arrivals is not None:
                    self.arrivals.append((self._in_flight, self._answered))
                self._in_flight += 1
            try:
                resp = handle(req)
                # The modelled latency is slept here, not after (as the server would): in flight until then.
                time.sleep(max(0.0, resp.delay))
                resp.delay = 0.0
                return resp
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._answered += 1
                    self._lock.notify_all()

        server.app.handle = recorded

    def arm(self, timeout_s: float = 60.0) -> None:
        """Once no feed request is in flight (a killed run's held ones answered), start a new record."""
        with self._lock:
            assert self._lock.wait_for(lambda: self._in_flight == 0, timeout_s), "feed requests still in flight"
            self._answered = 0
            self.arrivals = []


def client(key: str = KEY) -> requests.Session:
    s = requests.Session()
    s.headers["X-API-Key"] = key
    return s


def events_page(s: requests.Session, url: str, **params) -> dict:
    r = s.get(url + "/api/v1/events", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def read_all(s: requests.Session, url: str, path: str = "/api/v1/events", limit: int = 500,
             headers: dict | None = None, **params) -> list[dict]:
    """Every event of a listing, following nextCursor to the end."""
    out: list[dict] = []
    cursor = None
    while True:
        q = {"limit": limit, **params}
        if cursor:
            q["cursor"] = cursor
        r = s.get(url + path, params=q, headers=headers, timeout=10)
        assert r.status_code == 200, r.text
        page = r.json()
        out += page["data"]
        cursor = page["pagination"]["nextCursor"]
        if not page["pagination"]["hasMore"]:
            assert cursor is None
            return out


def cursor(ts: int, eid: str, exp: int = 4_102_444_800_000) -> str:
    """A forged cursor continuing after (ts, eid); expires in 2100 by default."""
    raw = json.dumps({"id": eid, "ts": ts, "v": 2, "exp": exp}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def decode_cursor(text: str) -> dict:
    return json.loads(base64.b64decode(text))


def ts_ms(value) -> int:
    """Epoch ms of an event timestamp in either captured form."""
    import datetime as dt

    if isinstance(value, int):
        return value
    return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def stream_token(s: requests.Session, url: str) -> dict:
    r = s.post(url + "/internal/dashboard/stream-access", headers={"User-Agent": BROWSER_UA}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["streamAccess"]


def release_late(url: str) -> dict:
    """POST /__sim/release-late: show the held-back late and new events; returns the JSON answer."""
    r = requests.post(url + "/__sim/release-late", timeout=60)
    assert r.status_code == 200, r.text
    return r.json()

