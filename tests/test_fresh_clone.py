"""The path of a user who arrives from the assignment: a fresh clone, no .env, no Docker engine,
`sh run-ingestion.sh` (the demo), then `status`, `verify` and `export` through the same script.

The clone is the repository's tracked files copied to a new directory; its .venv is this one (the
same pins, so the script installs nothing), its embedded PostgreSQL is its own, in its .data/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_EVENTS = 2_000


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    target = tmp_path / "datasync-ingest"
    for name in filter(None, files.stdout.split("\0")):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    (target / ".venv").symlink_to(Path(sys.executable).parent.parent)
    assert not (target / ".env").exists() and not (target / ".data").exists()
    return target


def sh(clone: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "API_BASE_URL", "DATABASE_URL", "DATA_DIR")}
    env["RUN_INGESTION_MODE"] = "native"  # as here, without a Docker engine, even where one answers
    return subprocess.run(["sh", "run-ingestion.sh", *args], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_a_fresh_clone_runs_the_demo_then_status_verify_and_export(clone: Path) -> None:
    demo = sh(clone, "--demo-events", str(DEMO_EVENTS))
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert f"ingestion complete: {DEMO_EVENTS:,} events in the table" in demo.stderr
    assert demo.stdout.splitlines()[-1] == "verify: complete"
    # The demo keeps its own store under DATA_DIR/demo: a live run's store (DATA_DIR/pg) is not touched.
    assert (clone / ".data" / "demo" / "pg" / "PG_VERSION").is_file()
    assert sorted(p.name for p in (clone / ".data").iterdir()) == ["demo"]

    status = sh(clone, "status")
    assert status.returncode == 0, status.stderr
    assert f"events stored: {DEMO_EVENTS:,}" in status.stdout.splitlines()

    verify = sh(clone, "verify")
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.splitlines()[-2:] == [
        f"API total: {DEMO_EVENTS:,}; stored: {DEMO_EVENTS:,}; quarantined (distinct, not stored): 0;"
        " time range covered: yes", "verify: complete"]

    export = sh(clone, "export")
    assert export.returncode == 0, export.stderr
    ids = (clone / "event_ids.txt").read_text().splitlines()
    assert len(ids) == len(set(ids)) == DEMO_EVENTS and ids == sorted(ids)
    assert export.stdout.splitlines()[-1].startswith(f"export: {DEMO_EVENTS:,} ids written to event_ids.txt")
    assert sorted(p.name for p in (clone / ".data").iterdir()) == ["demo"]  # status, verify, export: the same
