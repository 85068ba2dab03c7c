from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.fix_database import DatabaseServer, NoDatabase, start_database_server
from tests.fix_ingest import STORED_EVENTS, STORED_SEED, ingested_simulator, stored_simulator


@pytest.fixture(scope="session")
def database_server() -> Iterator[DatabaseServer]:
    with contextlib.ExitStack() as stack:
        try:
            server = start_database_server(stack)
        except NoDatabase as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server


@pytest.fixture(scope="session")
def ingested_template(database_server: DatabaseServer) -> Iterator[str]:
    """The name of a database holding a complete store of STORED_EVENTS events: ingested once per session."""
    with database_server.fresh_database() as url:
        with stored_simulator(url, STORED_EVENTS, seed=STORED_SEED):
            pass
        name = conninfo_to_dict(url)["dbname"]
        with psycopg.connect(database_server.admin_url, autocommit=True) as conn:  # a template takes no client
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        yield name


@pytest.fixture
def database_url(database_server: DatabaseServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new database for one test: empty, or for a test that asks for `ingested`, a copy of the template."""
    template = request.getfixturevalue("ingested_template") if "ingested" in request.fixturenames else None
    with database_server.fresh_database(template) as url:
        yield url


@pytest.fixture
def ingested(database_url: str) -> Iterator[str]:
    """A new simulator whose STORED_EVENTS events are all stored in database_url; yields its URL.

    The store is a copy of the template (see `database_url`), so each test has its own store and its own
    simulator (its own submissions), for one ingestion per session.
    """
    with ingested_simulator(database_url, STORED_EVENTS, seed=STORED_SEED) as url:
        yield url


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault suite's summary: expected / stored / missing / extra ids per scenario that ran."""
    from tests.fix_faults import SUMMARY, summary_lines

    if SUMMARY:
        terminalreporter.section("fault suite: expected / stored / missing / extra ids")
        for line in summary_lines():
            terminalreporter.write_line(line)
