"""HTTP/1.1 keep-alive server around `App`, usable in-process (`SimServer`) or from the CLI.

One thread per connection (ThreadingHTTPServer). Latency and slow-chaos delays are slept in the
connection's thread with no lock held, so concurrent requests overlap as on the real service.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .app import JSON, App, Request, Response, error
from .config import SimConfig
from .dataset import build_tables

IDLE_TIMEOUT_S = 120.0  # an idle keep-alive connection is closed after this
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""
    timeout = IDLE_TIMEOUT_S
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of the base class
        pass  # one line per request would cost more than the request itself

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        req = Request.build(self.command, self.path, dict(self.headers.items()), body)
        started = time.monotonic()
        try:
            resp = self.server.app.handle(req)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            resp = error(500, "Internal Server Error", "An unexpected error occurred", "INTERNAL_ERROR", "error")
        # The modelled latency is the server's whole time for the request: the simulator's own work (making
        # the page's events) is part of it, not on top, or every answer would be slower than the bounds say.
        delay = resp.delay - (time.monotonic() - started)
        if delay > 0:
            time.sleep(delay)
        if req.path.startswith("/__sim/"):
            self._write(self._render(resp))
            return
        if resp.reset:
            self.server.app.stats.record(resp.endpoint, "reset")
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        out = self._render(resp)
        # Counted before the answer goes out: a client that reads it and then asks /__sim/stats (another
        # thread) must find it counted, however slowly this thread is scheduled.
        self.server.app.stats.record(resp.endpoint, resp.status, len(out), resp.events if resp.status == 200 else 0)
        self._write(out)

    def _render(self, resp: Response) -> bytes:
        body = resp.body if resp.truncate_to is None else resp.body[:resp.truncate_to]
        lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Unknown')}",
                 f"Date: {formatdate(usegmt=True)}",
                 f"Content-Type: {resp.content_type}",
                 f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in resp.headers]
        lines.append("Connection: close" if self.close_connection else "Connection: keep-alive")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if resp.head_only else head + body

    def _write(self, out: bytes) -> None:
        try:
            self.wfile.write(out)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], app: App) -> None:
        self.app = app
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def track(self, conn: socket.socket, open_: bool) -> None:
        with self._conns_lock:
            if open_:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def handle_error(self, request, client_address) -> None:
        """A client that vanished mid-request (killed, timed out) is normal here, not a traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def open_connections(self) -> int:
        with self._conns_lock:
            return len(self._conns)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SimServer:
    """The simulator in a background thread: `with SimServer(cfg) as sim: requests.get(sim.url …)`."""

    def __init__(self, cfg: SimConfig, host: str = "127.0.0.1", port: int = 0, *,
                 clock: Callable[[], float] | None = None, wall_ms: Callable[[], int] | None = None) -> None:
        """`clock` (monotonic s) and `wall_ms` (epoch ms) replace the real clocks, for tests that move time."""
        self.cfg = cfg
        self.app = App(cfg, clock, wall_ms)
        build_tables()  # before listening: the first answer must take the modelled latency, not a second more
        self._httpd = _HTTPServer((host, port), self.app)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> SimServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="datasync-sim", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        self._httpd.close_connections()
        self.app.readahead.close()

    def open_connections(self) -> int:
        """Client connections open now (keep-alive ones included)."""
        return self._httpd.open_connections()

    def revoke_key(self, key: str) -> None:
        """Answer 401 to `key` from now on, as the live API does once a key has expired."""
        self.app.revoke_key(key)

    def add_events(self, count: int) -> int:
        """Add `count` events newer than the newest; returns the new total."""
        return self.app.ds.grow(count)

    def release_late(self) -> dict:
        """Release the held-back events (as POST /__sim/release-late); returns its JSON answer."""
        return self.app.release_late()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["SimServer", "JSON"]
