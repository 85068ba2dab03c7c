"""run-ingestion.sh: the mode it picks, what it says first, and what it runs, with `docker` and the
interpreter replaced by stubs that record their calls (no Docker engine, no network, no real venv)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "run-ingestion.sh"
DEMO_LINE = "no API_KEY configured: running the demo against the local simulator"
PIP_LINE = "-m pip install --quiet --disable-pip-version-check -r requirements.txt"

# An interpreter that records its arguments; `-m venv DIR` installs a copy of itself as DIR/bin/python.
STUB_PYTHON = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$STUB_LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
exit 0
"""

# A docker client. STUB_ENGINE=down: `docker info` fails as it does with no engine behind the client.
# Otherwise `inspect` prints $STUB_STATE, `logs` prints progress until the $STUB_COMPLETE_AFTER-th call,
# then also `ingestion complete` (never when it is 0), and `exec` (psql) prints $STUB_COUNT.
STUB_DOCKER = """#!/usr/bin/env bash
printf 'docker %s | API_KEY=%s API_BASE_URL=%s\\n' "$*" "${API_KEY-<unset>}" "${API_BASE_URL-<unset>}" \\
  >> "$STUB_LOG"
case $1 in
  info) [ "${STUB_ENGINE:-up}" = up ] ;;
  compose) exit 0 ;;
  inspect) echo "$STUB_STATE" ;;
  logs)
    n=$(( $(cat "$STUB_LOG.logs" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$STUB_LOG.logs"
    echo "INFO progress: 1,000 events"
    if [ "${STUB_COMPLETE_AFTER:-1}" != 0 ] && [ "$n" -ge "${STUB_COMPLETE_AFTER:-1}" ]; then
      echo "INFO ingestion complete: 3,000,000 events in the table"
    fi ;;
  exec) echo "${STUB_COUNT:-0}" ;;
  stop | rm) exit 1 ;;
  *) exit 0 ;;
esac
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the files the script works with, and a bin/ of stubs put first on PATH."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("run-ingestion.sh", "requirements.txt", "requirements-dev.txt"):
        shutil.copy2(ROOT / name, work / name)
    (work / "bin").mkdir()
    _executable(work / "bin" / "python-stub", STUB_PYTHON)
    _executable(work / "bin" / "docker", STUB_DOCKER)
    return work


def run(work: Path, *args: str, engine: str = "down", dotenv: str | None = None, **env: str):
    """Run the copied script; returns (completed process, recorded stub calls)."""
    if dotenv is not None:
        (work / ".env").write_text(dotenv)
    full_env = {
        k: v for k, v in os.environ.items()
        if k not in ("API_KEY", "API_BASE_URL", "RUN_INGESTION_MODE", "SIM_EVENTS", "SIM_PROFILE")
    }
    full_env.update(
        PATH=f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}",
        PYTHON=str(work / "bin" / "python-stub"),
        STUB_LOG=str(work / "calls.log"),
        STUB_ENGINE=engine,
        RUN_INGESTION_POLL_S="0",
        **env,
    )
    proc = subprocess.run(["bash", str(work / "run-ingestion.sh"), *args], cwd=work, env=full_env,
                          capture_output=True, text=True, timeout=60)
    log = work / "calls.log"
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return proc, calls


def interpreter_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if not c.startswith("docker ")]


def compose_ups(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("docker compose ") and " up " in c]


def test_script_passes_bash_syntax_check():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_script_is_executable_bash_in_strict_mode():
    lines = SCRIPT.read_text().splitlines()
    assert os.access(SCRIPT, os.X_OK)
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines


def test_without_docker_or_key_runs_native_demo_and_says_so_first(workdir):
    proc, calls = run(workdir, "--demo-events", "10", dotenv="API_BASE_URL=http://localhost:8080\nAPI_KEY=\n")
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert "native mode" in first and DEMO_LINE in first
    assert interpreter_calls(calls) == ["-m venv .venv", PIP_LINE, "ingest.py --demo --demo-events 10"]
    assert "docker info | API_KEY=<unset> API_BASE_URL=<unset>" in calls


def test_with_api_key_in_the_environment_runs_the_plain_ingester(workdir):
    proc, calls = run(workdir, "--concurrency", "2", API_KEY="ds_" + "a" * 32, API_BASE_URL="http://api:80")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "run-ingestion: native mode (no Docker engine answers): ingesting from http://api:80"
    )
    assert interpreter_calls(calls) == ["-m venv .venv", PIP_LINE, "ingest.py --concurrency 2"]


@pytest.mark.parametrize(
    ("dotenv", "args", "expected"),
    [
        ('export API_KEY = "ds_0123"  # from the portal\n', (), "ingest.py"),
        ("API_KEY=ds_0123 # comment\nAPI_KEY=\n", (), "ingest.py --demo"),  # the last assignment wins
        ("API_KEY=\n", ("--api-key", "ds_0123"), "ingest.py --api-key ds_0123"),
        ("API_KEY=\n", ("--api-key=ds_0123",), "ingest.py --api-key=ds_0123"),
        ("API_KEY=\n", ("--env-file", "other.env"), "ingest.py --env-file other.env"),
        ("API_KEY=\n", ("status",), "ingest.py status"),  # a subcommand is never turned into a demo
    ],
)
def test_the_key_is_found_where_the_ingester_looks(workdir, dotenv, args, expected):
    (workdir / "other.env").write_text("API_KEY=ds_0123\n")
    proc, calls = run(workdir, *args, dotenv=dotenv)
    assert proc.returncode == 0, proc.stderr
    assert interpreter_calls(calls)[-1] == expected
    assert (DEMO_LINE in proc.stdout.splitlines()[0]) == ("--demo" in expected)


def test_an_empty_api_key_in_the_environment_hides_the_dotenv_one(workdir):
    # The ingester lets the environment win over .env even when empty, so it would see no key: demo.
    proc, calls = run(workdir, dotenv="API_KEY=ds_0123\n", API_KEY="")
    assert interpreter_calls(calls)[-1] == "ingest.py --demo"


def test_venv_is_reused_until_requirements_change(workdir):
    run(workdir, API_KEY="k", API_BASE_URL="http://api")
    _, calls = run(workdir, API_KEY="k", API_BASE_URL="http://api")
    assert interpreter_calls(calls) == ["ingest.py"]
    with (workdir / "requirements.txt").open("a") as f:
        f.write("extra==1.0\n")
    _, calls = run(workdir, API_KEY="k", API_BASE_URL="http://api")
    assert interpreter_calls(calls) == [PIP_LINE, "ingest.py"]


def test_the_stamp_of_run_tests_covers_the_runtime_requirements(workdir):
    run(workdir, API_KEY="k", API_BASE_URL="http://api")  # creates .venv
    (workdir / ".venv" / ".runtime-requirements-installed").unlink()
    stamp = (workdir / "requirements.txt").read_text() + (workdir / "requirements-dev.txt").read_text()
    (workdir / ".venv" / ".requirements-installed").write_text(stamp)
    _, calls = run(workdir, API_KEY="k", API_BASE_URL="http://api")
    assert interpreter_calls(calls) == ["ingest.py"]


def test_docker_demo_starts_the_demo_profile_with_a_fresh_key_and_waits_for_completion(workdir):
    proc, calls = run(workdir, engine="up", dotenv="API_BASE_URL=http://localhost:8080\nAPI_KEY=\n",
                      STUB_STATE="running 0", STUB_COMPLETE_AFTER="3", STUB_COUNT="3000000")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0].startswith("run-ingestion: Docker Compose mode, demo: no API_KEY configured")
    assert re.fullmatch(r"run-ingestion: ingestion complete: 3000000 events in ingested_events \(\d+ s\)", out[-2])
    assert "docker compose down -v" in out[-1]  # demo rows must not mix with a later live run
    assert len([line for line in out if "events ingested: 3000000" in line]) == 2  # two polls before done
    up = compose_ups(calls)
    assert len(up) == 1
    assert re.fullmatch(
        r"docker compose --profile demo up -d --build \| API_KEY=ds_[0-9a-f]{32} API_BASE_URL=http://simulator:8080",
        up[0],
    )
    psql = "docker exec assignment-postgres psql -U postgres -d ingestion -tAc SELECT COUNT(*) FROM ingested_events"
    assert any(c.startswith(psql) for c in calls)
    # the simulator is stopped once done, after the last progress poll
    stops = [i for i, c in enumerate(calls) if c.startswith("docker compose --profile demo stop simulator")]
    assert len(stops) == 1 and stops[0] > max(i for i, c in enumerate(calls) if c.startswith("docker logs"))
    assert interpreter_calls(calls) == []  # never the native path


def test_docker_live_mode_uses_the_configured_api_without_the_simulator(workdir):
    proc, calls = run(workdir, engine="up", dotenv="API_BASE_URL=http://api.example:80\nAPI_KEY=ds_0123\n",
                      STUB_STATE="running 0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "run-ingestion: Docker Compose mode, live: ingesting from http://api.example:80"
    # The key stays in .env for Compose to read; the script neither invents one nor exports one.
    assert compose_ups(calls) == [
        "docker compose up -d --build | API_KEY=<unset> API_BASE_URL=<unset>"
    ]
    assert not [c for c in calls if " stop simulator" in c]
    assert proc.stdout.splitlines()[-1].startswith("run-ingestion: ingestion complete: 0 events")


def test_docker_mode_fails_with_the_exit_code_when_ingestion_stops_without_completing(workdir):
    proc, calls = run(workdir, engine="up", dotenv="API_KEY=\n", STUB_STATE="exited 3", STUB_COMPLETE_AFTER="0")
    assert proc.returncode == 3
    stops = [c.split(" |")[0] for c in calls if " stop simulator" in c]
    assert stops == ["docker compose --profile demo stop simulator"]
    assert "INFO progress: 1,000 events" in proc.stderr  # the container's last lines are shown
    assert proc.stderr.strip().splitlines()[-1] == (
        "run-ingestion: error: the ingestion container stopped (exited 3) without logging 'ingestion complete'"
    )


def test_docker_mode_treats_a_clean_exit_without_completion_as_failure(workdir):
    proc, _ = run(workdir, engine="up", dotenv="API_KEY=\n", STUB_STATE="exited 0", STUB_COMPLETE_AFTER="0")
    assert proc.returncode == 1


def test_docker_mode_refuses_arguments_it_cannot_pass_on(workdir):
    proc, calls = run(workdir, "--concurrency", "2", engine="up", dotenv="API_KEY=\n")
    assert proc.returncode == 2
    assert "only in native mode" in proc.stderr
    assert compose_ups(calls) == []


def test_native_mode_can_be_forced_with_an_engine_present(workdir):
    proc, calls = run(workdir, engine="up", dotenv="API_KEY=\n", RUN_INGESTION_MODE="native")
    assert proc.returncode == 0, proc.stderr
    assert DEMO_LINE in proc.stdout.splitlines()[0]
    assert interpreter_calls(calls)[-1] == "ingest.py --demo"
