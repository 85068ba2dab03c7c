"""Shared by the bench scripts: realistic events, a database to measure on, medians, peak memory."""

from __future__ import annotations

import contextlib
import resource
import statistics
import tempfile
import uuid
from collections.abc import Iterator

import orjson
import psycopg

from datasync_sim.config import profile_config
from datasync_sim.dataset import Dataset
from datasync_sim.pages import event_items


def realistic_events(count: int, seed: int = 1, chunk: int = 5000) -> Iterator[list[dict]]:
    """Pages of events exactly as the simulator serves them on /api/v1/events (mixed timestamps)."""
    view = Dataset(profile_config("fast", events=count, seed=seed)).snapshot()
    for start in range(0, count, chunk):
        items, _ = event_items(view.records(start, min(count, start + chunk)), "mixed", None)
        yield [orjson.loads(item) for item in items]


@contextlib.contextmanager
def bench_database(database_url: str | None) -> Iterator[str]:
    """A fresh database on the given server, or on an embedded one in a temporary directory."""
    with contextlib.ExitStack() as stack:
        if database_url is None:
            import pgserver

            datadir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pg-"))
            server = pgserver.get_server(datadir, cleanup_mode="stop")
            stack.callback(server.cleanup)
            database_url = server.get_uri()
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        params = psycopg.conninfo.conninfo_to_dict(database_url)
        params["dbname"] = name
        try:
            yield psycopg.conninfo.make_conninfo(**params)
        finally:
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024
