"""A store belongs to the API of the run that first stores an event in it, not of a run that stored none.

Real HTTP (the simulator, and a server that only redirects), a real PostgreSQL, the CLI in this process.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from datasync_sim import SimServer, profile_config
from ingest.commands.cli import main
from ingest.store.checkpoint import create_schema
from ingest.store.origin import Origin, check_origin
from tests.fix_ingest import exactness, ingest_args

EVENTS = 3_000


@contextlib.contextmanager
def redirecting_to(target: str) -> Iterator[str]:
    """A server answering every request with 302 to `target` (as http:// in front of an https:// API does)."""

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            self.send_response(302)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, name="redirect", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_corrected_url_after_a_first_run_that_stored_nothing_ingests_into_the_same_store(
    database_url: str, capsys: pytest.CaptureFixture
) -> None:
    with SimServer(profile_config("fast", events=EVENTS, seed=5)) as sim, redirecting_to(
            sim.url.replace("http://", "https://")) as wrong:
        assert main(ingest_args(wrong, database_url)) == 1
        first = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert main(ingest_args(sim.url, database_url)) == 0
        second = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        result = exactness(sim.url, database_url)
    assert len(first) == 1 and first[0].endswith("check API_BASE_URL"), first
    assert second == []
    assert result == {"expected": EVENTS, "stored": EVENTS, "identical": True}
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT base_url FROM ingest_origin").fetchall() == [(sim.url,)]


def test_an_empty_store_of_another_origin_is_refused_to_no_one(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        create_schema(conn)
        conn.execute("INSERT INTO ingest_origin (base_url, key_fingerprint) VALUES ('http://wrong:1', 'f1')")
        conn.commit()
        # verify and submit write nothing; a run takes the store
        check_origin(conn, Origin("http://right:2", "f2"), lambda anchor: None, record=False)
        assert conn.execute("SELECT base_url FROM ingest_origin").fetchall() == [("http://wrong:1",)]
        check_origin(conn, Origin("http://right:2", "f2"), lambda anchor: None, record=True)
        assert conn.execute("SELECT base_url, key_fingerprint FROM ingest_origin").fetchall() == [
            ("http://right:2", "f2")]
