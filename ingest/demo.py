"""--demo: run the simulator as a child process on a free port and point the ingester at it."""

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

SIM_START_TIMEOUT_S = 30.0  # s; the simulator materialises nothing, it listens within a second
SIM_STOP_TIMEOUT_S = 10.0  # s; then it is killed
_LISTENING = re.compile(r"listening on (http://\S+)")


@contextlib.contextmanager
def simulator(profile: str, events: int, seed: int = 1, knobs: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """Start `python -m datasync_sim` on a free port; yield (base URL, API key); always stop it.

    `knobs` are extra simulator flags (e.g. `--p-5xx 0`), for benchmarks.
    """
    api_key = "ds_" + secrets.token_hex(16)
    command = [sys.executable, "-m", "datasync_sim", "--host", "127.0.0.1", "--port", "0",
               "--profile", profile, "--events", str(events), "--seed", str(seed), "--api-key", api_key, *knobs]
    root = Path(__file__).resolve().parent.parent
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
