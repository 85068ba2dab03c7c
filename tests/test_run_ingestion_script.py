"""run-ingestion.sh: the mode it picks, what it says first, and what it runs, under every shell a user
may start it with (`sh` is dash on Debian and Ubuntu, busybox on Alpine), with `docker`, `podman`,
`podman-compose` and the interpreter replaced by stubs that record their calls (no engine, no network,
no real venv).

The stub interpreter hands `-m ingest.commands.preflight` to the real one, so the .env file is really read by
python-dotenv, as the ingester reads it; the stub engines read it the same way for `compose config`
(JSON, as docker compose prints it; YAML, as podman-compose does).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "run-ingestion.sh"
DEMO_LINE = "run-ingestion: no API_KEY configured: running the demo against the local simulator"
PIP_LINE = "-m pip install --quiet --disable-pip-version-check -r requirements.txt"
VERSION_CHECK = "-c import sys; sys.exit(sys.version_info < (3, 11))"
FRESH_VENV = [VERSION_CHECK, "-m venv .venv", PIP_LINE]

# Every way a user starts the script; busybox where it is installed (Debian: apt-get install busybox).
SHELLS = [("sh",), ("bash",)] + ([("busybox", "sh")] if shutil.which("busybox") else [])

# An interpreter that records its arguments; `-m venv DIR` installs a copy of itself as DIR/bin/python;
# `-m ingest.commands.preflight` and `-c` (the Compose stub's JSON reader) run in the real interpreter, unrecorded.
STUB_PYTHON = """#!/bin/sh
case "$1 $2" in
  "-m ingest.commands.preflight") exec "$REAL_PYTHON" "$@" ;;
  "-c import json"*) exec "$REAL_PYTHON" "$@" ;;
esac
printf '%s\\n' "$*" >> "$STUB_LOG"
if [ "$1" = -m ] && [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi
exit 0
"""

# What `docker compose config --format json` (or, with --yaml, `podman-compose config`) says of the
# ingestion service: Compose's interpolation of `${API_KEY:-}` and `${API_BASE_URL:-http://simulator:8080}`
# from the environment, then .env.
COMPOSE_CONFIG = """
import json, os, sys
import yaml
from dotenv import dotenv_values
env = {**{k: v for k, v in dotenv_values(".env").items() if v is not None}, **os.environ}
config = {"services": {"ingestion": {"environment": {
    "API_KEY": env.get("API_KEY") or "", "API_BASE_URL": env.get("API_BASE_URL") or "http://simulator:8080"}}}}
print(yaml.safe_dump(config) if sys.argv[1:] == ["--yaml"] else json.dumps(config))
"""

# One stub for `docker`, `podman` and `podman-compose`, telling them apart by its name; every call is
# recorded with the API settings it was given.
#   STUB_ENGINE / STUB_PODMAN=down: `docker info` / `podman info` fail as with no engine behind the client.
#   STUB_DOCKER_COMPOSE=absent: `docker compose version` fails, as without the compose plugin.
#   STUB_PODMAN_COMPOSE=up: `podman-compose version` works (else it fails, as if not installed);
#   STUB_PODMAN_COMPOSE_PLUGIN=up: `podman compose version` works (podman >= 4.7 with a provider).
#   `inspect` prints $STUB_STATE for the ingestion container (`.State.Status .State.ExitCode`),
#   $STUB_DEPENDENCY_STATE (running) for the others; a healthcheck fails $STUB_UNHEALTHY_FOR times (0),
#   then passes, unless $STUB_DEPENDENCY_STATE is not running.
#   `logs` prints progress until the $STUB_COMPLETE_AFTER-th call, then also `ingestion complete` (never
#   when it is 0), and `exec` (psql) prints $STUB_COUNT.
STUB_ENGINE = """#!/bin/sh
tool=${0##*/}
printf '%s %s | API_KEY=%s API_BASE_URL=%s\\n' "$tool" "$*" "${API_KEY-<unset>}" "${API_BASE_URL-<unset>}" \\
  >> "$STUB_LOG"
passes_healthcheck() {
  [ "${STUB_DEPENDENCY_STATE:-running}" = running ] || return 1
  n=$(( $(cat "$STUB_LOG.health" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$STUB_LOG.health"
  [ "$n" -gt "${STUB_UNHEALTHY_FOR:-0}" ]
}
if [ "$tool" = podman-compose ]; then
  [ "${STUB_PODMAN_COMPOSE:-absent}" = up ] || exit 127
  set -- compose "$@"
fi
case $1 in
  info)
    case $tool in
      docker) [ "${STUB_ENGINE:-up}" = up ] ;;
      podman) [ "${STUB_PODMAN:-down}" = up ] ;;
    esac ;;
  compose)
    case "$tool $*" in
      "docker compose version") [ "${STUB_DOCKER_COMPOSE:-up}" = up ] ;;
      "podman compose version") [ "${STUB_PODMAN_COMPOSE_PLUGIN:-absent}" = up ] ;;
      "podman-compose"*" config --format json") exit 2 ;;  # podman-compose prints YAML only
      "podman-compose"*" config") exec "$REAL_PYTHON" -c "$COMPOSE_CONFIG" --yaml ;;
      *" config --format json") exec "$REAL_PYTHON" -c "$COMPOSE_CONFIG" ;;
      *" run "*) exit "${STUB_RUN_EXIT:-0}" ;;
    esac ;;
  inspect)
    case "$*" in
      *ExitCode*) echo "$STUB_STATE" ;;
      *Health*) if passes_healthcheck; then echo healthy; else echo starting; fi ;;
      *) echo "${STUB_DEPENDENCY_STATE:-running}" ;;
    esac ;;
  healthcheck) passes_healthcheck ;;
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
ENGINE_TOOLS = ("docker", "podman", "podman-compose")


SHELL_OF: dict[Path, tuple[str, ...]] = {}  # workdir -> the shell that runs the script there


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture(params=SHELLS, ids=lambda shell: " ".join(shell))
def workdir(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A copy of the files the script works with, and a bin/ of stubs put first on PATH; every test
    that uses it runs once per shell of SHELLS."""
    work = tmp_path / "work"
    SHELL_OF[work] = request.param
    work.mkdir()
    for name in ("run-ingestion.sh", "requirements.txt", "requirements-dev.txt"):
        shutil.copy2(ROOT / name, work / name)
    (work / "bin").mkdir()
    _executable(work / "bin" / "python-stub", STUB_PYTHON)
    for tool in ENGINE_TOOLS:
        _executable(work / "bin" / tool, STUB_ENGINE)
    return work


def run(work: Path, *args: str, engine: str = "down", podman: str = "down", dotenv: str | None = None,
        **env: str):
    """Run the copied script with the shell of its workdir; returns (completed process, recorded stub calls)."""
    if dotenv is not None:
        (work / ".env").write_text(dotenv)
    full_env = {
        k: v for k, v in os.environ.items()
        if k not in ("API_KEY", "API_BASE_URL", "RUN_INGESTION_MODE", "SIM_EVENTS", "SIM_PROFILE")
    }
    full_env.update({
        "PATH": f"{work / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": str(work / "bin" / "python-stub"),
        "STUB_LOG": str(work / "calls.log"),
        "STUB_ENGINE": engine,
        "STUB_PODMAN": podman,
        "REAL_PYTHON": sys.executable,
        "PYTHONPATH": str(ROOT),
        "COMPOSE_CONFIG": COMPOSE_CONFIG,
        "RUN_INGESTION_POLL_S": "0",
        **env,
    })
    proc = subprocess.run([*SHELL_OF[work], str(work / "run-ingestion.sh"), *args], cwd=work, env=full_env,
                          capture_output=True, text=True, timeout=60)
    log = work / "calls.log"
    calls = log.read_text().splitlines() if log.exists() else []
    for name in ("calls.log", "calls.log.logs", "calls.log.health"):
        (work / name).unlink(missing_ok=True)
    return proc, calls


def interpreter_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if c.split()[0] not in ENGINE_TOOLS]


def compose_ups(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("docker compose ") and " up " in c]


def commands(calls: list[str]) -> list[str]:
    """The recorded calls without the API settings they were given."""
    return [c.split(" |")[0] for c in calls]


@pytest.mark.parametrize("shell", SHELLS, ids=lambda shell: " ".join(shell))
def test_script_passes_every_shells_syntax_check(shell):
    proc = subprocess.run([*shell, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_script_is_executable_posix_sh_in_strict_mode():
    lines = SCRIPT.read_text().splitlines()
    assert os.access(SCRIPT, os.X_OK)
    assert lines[0] == "#!/bin/sh"
    assert "set -eu" in lines


def test_without_docker_or_key_runs_native_demo_and_says_so(workdir):
    proc, calls = run(workdir, "--demo-events", "10", dotenv="API_BASE_URL=http://localhost:8080\nAPI_KEY=\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "run-ingestion: native mode (no Docker engine or podman answers)",
        "run-ingestion: creating .venv with " + str(workdir / "bin" / "python-stub"),
        "run-ingestion: installing requirements.txt into .venv",
        DEMO_LINE,
    ]
    assert interpreter_calls(calls) == [*FRESH_VENV, "ingest.py --demo --demo-events 10"]
    assert commands(calls)[:2] == ["docker info", "podman info"]


def test_with_api_key_in_the_environment_runs_the_plain_ingester(workdir):
    proc, calls = run(workdir, "--concurrency", "2", API_KEY="ds_" + "a" * 32, API_BASE_URL="http://api:80")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "run-ingestion: ingesting from http://api:80"
    assert interpreter_calls(calls) == [*FRESH_VENV, "ingest.py --concurrency 2"]


def test_an_interpreter_older_than_311_is_refused_before_creating_the_venv(workdir):
    old = workdir / "bin" / "python3.10"
    _executable(old, "#!/bin/sh\nexit 1\n")  # sys.exit(sys.version_info < (3, 11)) -> 1
    proc, calls = run(workdir, PYTHON=str(old))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"run-ingestion: error: {old} is older than Python 3.11: set PYTHON=python3.X (3.11 to 3.14) and rerun"]
    assert not (workdir / ".venv").exists()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_is_the_ingesters_own(workdir, flag):
    proc, calls = run(workdir, "export", flag, dotenv="API_KEY=\n")
    assert proc.returncode == 0, proc.stderr
    assert interpreter_calls(calls)[-1] == f"ingest.py export {flag}"  # never --demo, never run


def test_bad_arguments_are_reported_once_and_nothing_runs(workdir):
    proc, calls = run(workdir, "--no-such-flag", dotenv="API_KEY=\n")
    assert proc.returncode == 2
    assert proc.stderr.count("unrecognized arguments: --no-such-flag") == 1
    assert interpreter_calls(calls) == FRESH_VENV


@pytest.mark.parametrize(
    ("dotenv", "args", "expected"),
    [
        ('export API_KEY = "ds_0123"  # from the portal\n', (), "ingest.py"),
        ("API_KEY=ds_0123 # comment\nAPI_KEY=\n", (), "ingest.py --demo"),  # the last assignment wins
        ("API_KEY=\n", ("--api-key", "ds_0123"), "ingest.py --api-key ds_0123"),
        ("API_KEY=\n", ("--api-key=ds_0123",), "ingest.py --api-key=ds_0123"),
        ("API_KEY=\n", ("--env-file", "other.env"), "ingest.py --env-file other.env"),
        ("API_KEY=\n", ("status",), "ingest.py --demo status"),  # no key: the demo's own store
        ("API_KEY=\n", ("submit", "--repo", "https://x/y"), "ingest.py submit --repo https://x/y"),
        ("API_KEY=\n", ("verify",), "ingest.py --demo verify"),  # checked against the demo simulator
        ("API_KEY=\n", ("export", "--out", "ids.txt"), "ingest.py --demo export --out ids.txt"),
        ("API_KEY=ds_0123\n", ("verify",), "ingest.py verify"),
        ("API_KEY=ds_0123\n", ("--demo", "--demo-events", "5"), "ingest.py --demo --demo-events 5"),
    ],
)
def test_the_key_is_found_where_the_ingester_looks(workdir, dotenv, args, expected):
    (workdir / "other.env").write_text("API_KEY=ds_0123\n")
    proc, calls = run(workdir, *args, dotenv=dotenv)
    assert proc.returncode == 0, proc.stderr
    assert interpreter_calls(calls)[-1] == expected
    subcommand = any(name in expected for name in ("status", "verify", "export"))
    assert (DEMO_LINE in proc.stdout.splitlines()) == (expected.startswith("ingest.py --demo") and not subcommand)


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
    assert [c.split(" |")[0] for c in up] == [
        "docker compose --profile demo up -d postgres simulator",
        "docker compose --profile demo up -d --no-deps ingestion",
    ]
    for call in up:
        assert re.fullmatch(r".* \| API_KEY=ds_[0-9a-f]{32} API_BASE_URL=http://simulator:8080", call)
    assert len({call.split(" | ")[1] for call in up}) == 1  # one key for the whole run
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
        "docker compose up -d postgres | API_KEY=<unset> API_BASE_URL=<unset>",
        "docker compose up -d --no-deps ingestion | API_KEY=<unset> API_BASE_URL=<unset>",
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
    assert proc.stdout.splitlines()[0] == "run-ingestion: native mode (RUN_INGESTION_MODE=native)"
    assert DEMO_LINE in proc.stdout.splitlines()
    assert interpreter_calls(calls)[-1] == "ingest.py --demo"


def one_off_runs(calls: list[str]) -> list[str]:
    return [c for c in calls if c.startswith("docker compose ") and " run " in c]


def test_docker_mode_runs_status_in_a_one_off_container_in_this_directory(workdir):
    proc, calls = run(workdir, "status", engine="up", dotenv="API_KEY=\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "run-ingestion: Docker Compose mode: python ingest.py status in a one-off container"]
    user = f"{os.getuid()}:{os.getgid()}"
    assert one_off_runs(calls) == [
        f"docker compose run --rm --no-deps --volume {workdir}:/work --workdir /work --user {user}"
        " ingestion status"
        " | API_KEY=<unset> API_BASE_URL=<unset>"]
    # postgres first, healthy, then the one-off container; no simulator
    assert compose_ups(calls) == ["docker compose up -d postgres | API_KEY=<unset> API_BASE_URL=<unset>"]
    assert not [c for c in calls if " stop simulator" in c]


def test_docker_demo_verifies_and_exports_against_the_simulator_then_stops_it(workdir):
    proc, calls = run(workdir, "export", "--out", "ids.txt", engine="up", dotenv="API_KEY=\n", STUB_RUN_EXIT="1")
    assert proc.returncode == 1  # the one-off container's exit code
    assert proc.stdout.splitlines() == [
        "run-ingestion: Docker Compose mode: python ingest.py export in a one-off container,"
        " against the demo simulator (no API_KEY configured)"]
    (one_off,) = one_off_runs(calls)
    assert re.fullmatch(
        r"docker compose --profile demo run --rm --no-deps --volume \S+:/work --workdir /work --user \d+:\d+"
        r" ingestion export --out ids.txt \| API_KEY=ds_[0-9a-f]{32} API_BASE_URL=http://simulator:8080", one_off)
    stops = [c.split(" |")[0] for c in calls if " stop simulator" in c]
    assert stops == ["docker compose --profile demo stop simulator"]


def test_docker_live_mode_passes_subcommands_with_the_configured_key(workdir):
    proc, calls = run(workdir, "verify", engine="up", dotenv="API_BASE_URL=http://api:80\nAPI_KEY=ds_0123\n")
    assert proc.returncode == 0, proc.stderr
    (one_off,) = one_off_runs(calls)
    assert one_off.startswith("docker compose run --rm --no-deps ") and one_off.endswith(
        " ingestion verify | API_KEY=<unset> API_BASE_URL=<unset>")  # Compose reads .env itself


# --- podman: where no Docker engine answers -------------------------------------------------------------

def test_without_docker_podman_runs_the_stack_with_podman_compose_and_says_so(workdir):
    proc, calls = run(workdir, podman="up", dotenv="API_KEY=\n", STUB_PODMAN_COMPOSE="up",
                      STUB_STATE="running 0", STUB_COMPLETE_AFTER="2", STUB_COUNT="20000")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[:2] == [
        "run-ingestion: no Docker engine answers: using podman with podman-compose",
        "run-ingestion: podman Compose mode (podman-compose), demo: no API_KEY configured: the simulator runs in"
        " the compose 'demo' profile (3000000 events, profile fast)",
    ]
    assert re.fullmatch(r"run-ingestion: ingestion complete: 20000 events in ingested_events \(\d+ s\)", out[-2])
    assert out[-1] == ("run-ingestion: these are the simulator's events: run 'podman-compose down -v' before"
                       " ingesting from a real API")
    psql = "podman exec assignment-postgres psql -U postgres -d ingestion -tAc SELECT COUNT(*) FROM ingested_events"
    assert commands(calls) == [
        "docker info", "podman info", "podman compose version", "podman-compose version",
        "podman-compose config --format json", "podman-compose config",  # API_KEY
        "podman-compose config --format json", "podman-compose config",  # API_BASE_URL
        "podman stop -t 30 assignment-ingestion", "podman rm assignment-ingestion",
        "podman-compose --profile demo build",
        "podman-compose --profile demo up -d postgres simulator",
        "podman healthcheck run assignment-postgres", "podman healthcheck run assignment-simulator",
        "podman-compose --profile demo up -d --no-deps ingestion",
        "podman inspect -f {{.State.Status}} {{.State.ExitCode}} assignment-ingestion",
        "podman logs assignment-ingestion", psql,
        "podman inspect -f {{.State.Status}} {{.State.ExitCode}} assignment-ingestion",
        "podman logs assignment-ingestion", psql,
        "podman-compose --profile demo stop simulator",
    ]
    # one fresh key for every Compose call that starts containers, read back by no one else
    keys = {c.split(" | ")[1] for c in calls if c.startswith("podman-compose --profile demo")}
    assert len(keys) == 1 and re.fullmatch(r"API_KEY=ds_[0-9a-f]{32} API_BASE_URL=http://simulator:8080", keys.pop())


def test_podman_compose_of_podman_itself_is_preferred_to_podman_compose(workdir):
    proc, calls = run(workdir, "status", podman="up", dotenv="API_KEY=ds_0123\nAPI_BASE_URL=http://api:80\n",
                      STUB_PODMAN_COMPOSE="up", STUB_PODMAN_COMPOSE_PLUGIN="up")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "run-ingestion: no Docker engine answers: using podman with podman compose",
        "run-ingestion: podman Compose mode (podman compose): python ingest.py status in a one-off container",
    ]
    user = f"{os.getuid()}:{os.getgid()}"
    assert [c for c in commands(calls) if c.startswith("podman compose ") and "config" not in c] == [
        "podman compose version", "podman compose up -d postgres",
        f"podman compose run --rm --no-deps --volume {workdir}:/work --workdir /work --user {user}"
        " ingestion status"]
    assert not [c for c in calls if c.startswith("podman-compose ")]


def test_docker_is_preferred_when_both_engines_answer(workdir):
    proc, calls = run(workdir, "status", engine="up", podman="up", dotenv="API_KEY=ds_0123\n",
                      STUB_PODMAN_COMPOSE="up")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "run-ingestion: Docker Compose mode: python ingest.py status in a one-off container"]
    assert [c for c in commands(calls) if c.split()[0] != "docker"] == []
    assert "docker inspect -f {{.State.Health.Status}} assignment-postgres" in commands(calls)


def test_podman_is_used_beside_a_docker_engine_without_compose(workdir):
    proc, calls = run(workdir, engine="up", podman="up", dotenv="API_KEY=\n", STUB_DOCKER_COMPOSE="absent",
                      STUB_PODMAN_COMPOSE="up", STUB_STATE="exited 0", STUB_COMPLETE_AFTER="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "run-ingestion: a Docker engine answers but the compose plugin is missing: using podman with podman-compose")
    assert "podman-compose --profile demo up -d --no-deps ingestion" in commands(calls)


def test_podman_without_any_compose_runs_natively_and_says_why(workdir):
    proc, calls = run(workdir, podman="up", dotenv="API_KEY=\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "run-ingestion: native mode (no Docker engine answers; podman answers but has neither `podman compose`"
        " nor podman-compose)")
    assert interpreter_calls(calls)[-1] == "ingest.py --demo"


@pytest.mark.parametrize(("mode", "compose_up"), [
    ("podman", "podman-compose up -d --no-deps ingestion"),
    ("docker", "docker compose up -d --no-deps ingestion"),
])
def test_the_engine_can_be_forced(workdir, mode, compose_up):
    proc, calls = run(workdir, engine="up", podman="up", dotenv="API_BASE_URL=http://api:80\nAPI_KEY=ds_0123\n",
                      RUN_INGESTION_MODE=mode, STUB_PODMAN_COMPOSE="up", STUB_STATE="exited 0")
    assert proc.returncode == 0, proc.stderr
    assert compose_up in commands(calls)
    assert [c for c in commands(calls) if " info" in c] == []  # forced: no engine is probed


def test_forcing_podman_without_its_compose_is_refused(workdir):
    proc, calls = run(workdir, podman="up", dotenv="API_KEY=\n", RUN_INGESTION_MODE="podman")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "run-ingestion: error: RUN_INGESTION_MODE=podman: neither `podman compose` nor podman-compose works"]
    assert interpreter_calls(calls) == []


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_the_ingestion_starts_only_once_postgres_and_the_simulator_pass_their_healthchecks(workdir, engine):
    proc, calls = run(workdir, engine="up" if engine == "docker" else "down", podman="up",
                      dotenv="API_KEY=\n", STUB_PODMAN_COMPOSE="up", STUB_UNHEALTHY_FOR="2",
                      STUB_STATE="exited 0", STUB_COMPLETE_AFTER="1")
    assert proc.returncode == 0, proc.stderr
    compose = "docker compose" if engine == "docker" else "podman-compose"
    check = {"docker": "docker inspect -f {{.State.Health.Status}} ", "podman": "podman healthcheck run "}[engine]
    state = f"{engine} inspect -f {{{{.State.Status}}}} assignment-postgres"
    steps = [c for c in commands(calls) if c.startswith((check, state, f"{compose} --profile demo up "))]
    assert steps == [
        f"{compose} --profile demo up -d postgres simulator",
        check + "assignment-postgres", state,  # starting: still running, so wait
        check + "assignment-postgres", state,
        check + "assignment-postgres",
        check + "assignment-simulator",
        f"{compose} --profile demo up -d --no-deps ingestion",
    ]


def test_a_dependency_that_stops_fails_the_run_before_the_ingestion_starts(workdir):
    proc, calls = run(workdir, podman="up", dotenv="API_KEY=\n", STUB_PODMAN_COMPOSE="up",
                      STUB_DEPENDENCY_STATE="exited", STUB_COMPLETE_AFTER="0")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "INFO progress: 1,000 events",  # the container's last lines (the stub's)
        "run-ingestion: error: assignment-postgres stopped (exited) before passing its healthcheck"]
    assert "podman-compose --profile demo up -d --no-deps ingestion" not in commands(calls)
