"""Shared by the bench scripts: realistic events, a database to measure on, medians, peak memory,
and running `python ingest.py` as a measured child process."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
import requests

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
def postgres_server(database_url: str | None) -> Iterator[str]:
    """The given server's URL, or an embedded server's in a temporary directory, stopped at exit."""
    if database_url is not None:
        yield database_url
        return
    import pgserver

    with tempfile.TemporaryDirectory(prefix="bench-pg-") as datadir:
        server = pgserver.get_server(datadir, cleanup_mode="stop")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at `server_url` (a conninfo string); dropped at exit."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    params["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**params)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def bench_database(database_url: str | None) -> Iterator[str]:
    """A fresh database on the given server, or on an embedded one in a temporary directory."""
    with postgres_server(database_url) as server, fresh_database(server) as url:
        yield url


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


ROOT = Path(__file__).resolve().parent.parent
_COMPLETE = re.compile(r"ingestion complete: ([\d,]+) events in the table")


@dataclass(frozen=True)
class IngestRun:
    """One `python ingest.py` child: its exit code and its own resource usage (not the simulator's)."""

    exit_code: int
    wall_s: float  # from spawn to exit, interpreter start-up included (and the ~20 ms launcher)
    cpu_s: float  # user + system seconds of the ingester process (and any child it waited for)
    peak_rss_mb: float  # ru_maxrss of the ingester process
    in_table: int | None  # from its "ingestion complete" line
    log_tail: list[str]


# Runs a command as a forked child of this small process and writes the child's rusage to argv[1].
# Why not os.wait4 on our own child: subprocess starts children with vfork, and on Linux a process's
# ru_maxrss keeps the high-water mark of the memory it had before execve, i.e. the parent's, so the
# ingester would be charged for the bench process's own RSS (verified: 810 MB reported for `python -c
# pass` started by an 800 MB parent). Forked from this ~10 MB launcher, only the ingester's counts.
_LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"utime": ru.ru_utime, "stime": ru.ru_stime, "maxrss_kb": ru.ru_maxrss}, out)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_ingester(api_url: str, api_key: str, database_url: str, *extra: str) -> IngestRun:
    """Run `python ingest.py` against `api_url` into `database_url`, measuring its own CPU and peak RSS.

    Its log (stderr) goes to a temporary file, so a chatty run cannot block on a full pipe.
    """
    command = [sys.executable, str(ROOT / "ingest.py"), "--api-base-url", api_url, "--api-key", api_key,
               "--database-url", database_url, "--env-file", os.devnull, *extra]
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        usage_path = Path(tmp) / "rusage.json"
        with open(Path(tmp) / "log", "w+") as log:
            started = time.perf_counter()
            code = subprocess.run([sys.executable, "-c", _LAUNCHER, str(usage_path), *command], cwd=ROOT,
                                  stdout=log, stderr=subprocess.STDOUT, check=False).returncode
            wall = time.perf_counter() - started
            log.seek(0)
            text = log.read()
        usage = orjson.loads(usage_path.read_bytes())
    found = _COMPLETE.findall(text)
    return IngestRun(code, wall, usage["utime"] + usage["stime"], usage["maxrss_kb"] / 1024,
                     int(found[-1].replace(",", "")) if found else None, text.strip().splitlines()[-5:])


def expected_truth(api_url: str) -> dict:
    """The simulator's `/__sim/expected`: count and sha256 of the valid distinct ids."""
    return requests.get(api_url + "/__sim/expected", timeout=300).json()


def stored_truth(database_url: str, table: str = "ingested_events", column: str = "id") -> dict:
    """Count and sha256 of the distinct ids in `table`, in the simulator's canonical form.

    The ids are sorted as uuid (byte order, which is the order of their lowercase text) and hashed
    "\n"-joined while streaming, so 3,000,000 ids never sit in memory at once.
    """
    digest = hashlib.sha256()
    count = 0
    with psycopg.connect(database_url) as conn, conn.cursor(name="bench_truth") as cur:
        cur.itersize = 50_000
        cur.execute(f"SELECT u::text FROM (SELECT DISTINCT {column}::uuid AS u FROM {table}) d ORDER BY u")
        for (eid,) in cur:
            digest.update((("\n" if count else "") + eid).encode())
            count += 1
    return {"count": count, "sha256": digest.hexdigest()}


def exact(expected: dict, stored: dict) -> bool:
    return expected["count"] == stored["count"] and expected["sha256"] == stored["sha256"]
