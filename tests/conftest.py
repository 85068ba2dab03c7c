from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.fix_database import DatabaseServer, NoDatabase, start_database_server


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
