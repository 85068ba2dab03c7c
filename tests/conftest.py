from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.fix_database import DatabaseServer, NoDatabase, start_database_server
from tests.fix_ingest import STORED_EVENTS, stored_simulator


@pytest.fixture(scope="session")
def database_server() -> Iterator[DatabaseServer]:
    with contextlib.ExitStack() as stack:
        try:
            server = start_database_server(stack)
        except NoDatabase as exc:
            pytest.fail(str(exc), pytrace=False)
        yield server


@pytest.fixture
def database_url(database_server: DatabaseServer) -> Iterator[str]:
    """A new empty database for one test."""
    with database_server.fresh_database() as url:
        yield url


@pytest.fixture
def ingested(database_url: str) -> Iterator[str]:
    """A simulator whose STORED_EVENTS events are all stored in database_url; yields its URL."""
    with stored_simulator(database_url, STORED_EVENTS, seed=7) as url:
        yield url


def pytest_terminal_summary(terminalreporter) -> None:
    """The fault suite's summary: expected / stored / missing / extra ids per scenario that ran."""
    from tests.fix_faults import SUMMARY, summary_lines

    if SUMMARY:
        terminalreporter.section("fault suite: expected / stored / missing / extra ids")
        for line in summary_lines():
            terminalreporter.write_line(line)
