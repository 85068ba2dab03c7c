"""Helpers for end-to-end tests: run the ingester against the simulator, compare with its truth."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import requests

from datasync_sim import SimServer, profile_config
from ingest.commands.cli import main

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "ds_" + "0123456789abcdef" * 2
STORED_EVENTS = 5_000  # the `ingested` fixture's store (tests/conftest.py)
STORED_SEED = 7
REPO_URL = "https://github.com/example/datasync-ingest"  # what submissions name


def ingest_args(sim_url: str, database_url: str, *extra: str, key: str = API_KEY,
                log_level: str = "WARNING") -> list[str]:
    """The command line of a run (or of a command in `extra`) with `key` (one, or several comma-separated)."""
    return ["--api-base-url", sim_url, "--api-key", key, "--database-url", database_url,
            "--env-file", os.devnull, "--log-level", log_level, *extra]


def run_ingest(sim_url: str, database_url: str, *extra: str, key: str = API_KEY) -> int:
    """Run `python ingest.py` in this process; its exit code."""
    return main(ingest_args(sim_url, database_url, *extra, key=key))


def spawn_ingest(sim_url: str, database_url: str, *extra: str, key: str = API_KEY,
                 log_level: str = "INFO") -> subprocess.Popen:
    """Start `python ingest.py` as a child process (for kill and signal tests)."""
    args = ingest_args(sim_url, database_url, *extra, key=key, log_level=log_level)
    return subprocess.Popen([sys.executable, str(ROOT / "ingest.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def expected(sim_url: str) -> dict:
    return requests.get(sim_url + "/__sim/expected", timeout=10).json()


def stored_truth(database_url: str) -> dict:
    """The same figures as /__sim/expected, computed from ingested_events."""
    with psycopg.connect(database_url) as conn:
        ids = [row[0] for row in conn.execute("SELECT id::text FROM ingested_events ORDER BY 1")]
    return {"count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}


def exactness(sim_url: str, database_url: str) -> dict:
    """Expected vs stored: counts, and whether the id sets are identical."""
    want, got = expected(sim_url), stored_truth(database_url)
    return {"expected": want["count"], "stored": got["count"], "identical": want["sha256"] == got["sha256"]}


def sim_stats(sim_url: str) -> dict:
    return requests.get(sim_url + "/__sim/stats", timeout=10).json()


@contextlib.contextmanager
def stored_simulator(database_url: str, events: int, seed: int) -> Iterator[str]:
    """A `fast` simulator of `events` events, all of them stored in database_url; yields its URL."""
    with SimServer(profile_config("fast", events=events, seed=seed)) as server:
        assert run_ingest(server.url, database_url, "--page-size", "1000") == 0
        yield server.url


@contextlib.contextmanager
def ingested_simulator(database_url: str, events: int, seed: int) -> Iterator[str]:
    """A new `fast` simulator serving the dataset a copy of stored_simulator's store holds; yields its URL.

    The dataset is the same (same events, same seed), the URL is new: the store's origin is moved to it,
    as the template's run would have recorded it had it run against this simulator.
    """
    with SimServer(profile_config("fast", events=events, seed=seed)) as server:
        with psycopg.connect(database_url) as conn:
            moved = conn.execute("UPDATE ingest_origin SET base_url = %s", (server.url,)).rowcount
        assert moved == 1, "the copied store records no origin"
        yield server.url
