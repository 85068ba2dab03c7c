"""--demo: run the simulator as a child process on a free port and point the ingester at it; remember
in the database which simulator the demo data came from, so verify and export can check against one."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ingest.errors import IngestError
from ingest.store.database import connect

SIM_START_TIMEOUT_S = 30.0  # s; the simulator materialises nothing, it listens within a second
SIM_STOP_TIMEOUT_S = 10.0  # s; then it is killed
_LISTENING = re.compile(r"listening on (http://\S+)")
# The simulator is deterministic for a profile, a size and a seed (always 1 here): this row is enough to
# start one that serves the same events. Kept apart from the ingester's own tables.
DEMO_TABLE = """CREATE TABLE IF NOT EXISTS ingest_demo (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    demo_events  bigint NOT NULL,
    demo_profile text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
)"""


def record_demo(database_url: str, *, demo_events: int, demo_profile: str) -> None:
    """Remember the simulator a demo run ingested from (the last one wins)."""
    with connect(database_url, autocommit=True, role="demo") as conn:
        conn.execute(DEMO_TABLE)
        conn.execute(
            "INSERT INTO ingest_demo (demo_events, demo_profile) VALUES (%s, %s) ON CONFLICT (singleton)"
            " DO UPDATE SET demo_events = excluded.demo_events, demo_profile = excluded.demo_profile,"
            " recorded_at = now()",
            (demo_events, demo_profile),
        )


def recorded_demo(database_url: str) -> tuple[int, str] | None:
    """(demo events, demo profile) of the last demo run into this database, or None."""
    with connect(database_url, autocommit=True, role="demo") as conn:
        conn.execute(DEMO_TABLE)
        row = conn.execute("SELECT demo_events, demo_profile FROM ingest_demo").fetchone()
    return (int(row[0]), str(row[1])) if row else None


@contextlib.contextmanager
def simulator(profile: str, events: int, seed: int = 1, knobs: tuple[str, ...] = (),
              keys: int = 1) -> Iterator[tuple[str, str]]:
    """Start `python -m datasync_sim` on a free port; yield (base URL, API key); always stop it.

    `knobs` are extra simulator flags (e.g. `--p-5xx 0`), for benchmarks; with `keys` > 1 the key is
    that many comma-separated keys, each with its own budgets on the simulator.
    """
    api_key = ",".join("ds_" + secrets.token_hex(16) for _ in range(keys))
    command = [sys.executable, "-m", "datasync_sim", "--host", "127.0.0.1", "--port", "0",
               "--profile", profile, "--events", str(events), "--seed", str(seed), "--api-key", api_key,
               "--keys", str(keys), *knobs]
    root = Path(__file__).resolve().parents[2]  # the checkout (or /app), where datasync_sim/ lives
    child = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = _wait_for_url(child)
        yield url, api_key
    finally:
        child.terminate()
        try:
            child.wait(SIM_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_for_url(child: subprocess.Popen) -> str:
    found: list[str] = []

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            match = _LISTENING.search(line)
            if match:
                found.append(match.group(1))
                break

    reader = threading.Thread(target=read, name="sim-stdout", daemon=True)
    reader.start()
    reader.join(SIM_START_TIMEOUT_S)
    if not found:
        raise IngestError(f"the demo simulator did not start (exit code {child.poll()})")
    return found[0]
