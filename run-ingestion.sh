#!/bin/sh
# The one command to ingest: `sh run-ingestion.sh` or `./run-ingestion.sh` (plain POSIX sh: dash, bash,
# busybox sh, zsh's sh mode all run it).
#   With a Docker engine: runs the stack of docker-compose.yml, follows it and returns when the ingestion
#   container logs `ingestion complete` (like the assignment's own script).
#   Without one: runs natively in .venv with the embedded PostgreSQL (or DATABASE_URL).
#   With no API_KEY (environment, .env or --api-key): runs the demo against the local simulator.
# Subcommands go to `python ingest.py` in either mode: status, verify, export, submit (verify and export
# check against the demo simulator when no API_KEY is configured). Other arguments go to
# `python ingest.py` in native mode, e.g. sh run-ingestion.sh --concurrency 4
# RUN_INGESTION_MODE=native|docker forces a mode; RUN_INGESTION_POLL_S sets the Docker progress interval.
set -eu
cd "$(dirname "$0")"

INGESTION_CONTAINER=assignment-ingestion
POSTGRES_CONTAINER=assignment-postgres
DEMO_BASE_URL=http://simulator:8080  # the simulator service of the compose `demo` profile
POLL_S=${RUN_INGESTION_POLL_S:-5}    # seconds between progress lines in Docker mode
PYTHON=${PYTHON:-python3}

say() { printf 'run-ingestion: %s\n' "$*"; }
die() { printf 'run-ingestion: error: %s\n' "$1" >&2; exit "${2:-1}"; }  # die MESSAGE [EXIT_CODE]

subcommand=""
case ${1-} in
  -* | "") ;;
  *) subcommand=$1 ;;  # status, verify, export, submit...: passed to ingest.py, never turned into a run
esac

docker_answers() {
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

mode=${RUN_INGESTION_MODE:-auto}
case $mode in
  auto)
    if docker_answers; then
      if docker compose version >/dev/null 2>&1; then
        mode=docker
      else
        mode=native
        native_reason="a Docker engine answers but the compose plugin is missing"
      fi
    else
      mode=native
      native_reason="no Docker engine answers"
    fi
    ;;
  docker | native) native_reason="RUN_INGESTION_MODE=native" ;;
  *) die "RUN_INGESTION_MODE must be auto, docker or native, got '$mode'" 2 ;;
esac

# ---------------------------------------------------------------------------------------------------
# Native mode: .venv with requirements.txt, then exec the ingester (the demo when no key is configured).
if [ "$mode" = native ]; then
  say "native mode ($native_reason)"
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
      || die "$PYTHON is older than Python 3.11: set PYTHON=python3.X (3.11 to 3.14) and rerun" 2
    say "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
  fi
  # run-tests.sh's stamp covers requirements.txt too (requirements-dev.txt includes it); ours covers
  # only the runtime pins, so running the ingester never installs the test tools.
  dev_stamp=.venv/.requirements-installed
  runtime_stamp=.venv/.runtime-requirements-installed
  if ! { [ -f "$dev_stamp" ] && [ -f requirements-dev.txt ] \
           && cat requirements.txt requirements-dev.txt | cmp -s - "$dev_stamp"; } \
     && ! { [ -f "$runtime_stamp" ] && cmp -s requirements.txt "$runtime_stamp"; }; then
    say "installing requirements.txt into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt "$runtime_stamp"
  fi

  case " $* " in
    *" -h "* | *" --help "*) exec .venv/bin/python ingest.py "$@" ;;  # the ingester's own help
  esac
  # The arguments and .env as the ingester reads them (python-dotenv): command, whether a key is set.
  settings=$(.venv/bin/python -m ingest.commands.preflight "$@") || exit $?
  command=run api_key_configured=no api_base_url="" demo=no
  eval "$settings"
  case $command in
    run | status | verify | export)  # status: the demo keeps its own store (DATA_DIR/demo)
      if [ "$api_key_configured" = no ] && [ "$demo" = no ]; then
        set -- --demo "$@"
        demo=yes
      fi ;;
  esac
  if [ -n "$subcommand" ]; then
    what="python ingest.py $subcommand"
    [ "$demo" = no ] || what="$what, against the demo simulator (no API_KEY configured)"
    say "$what"
  elif [ "$demo" = yes ]; then
    say "no API_KEY configured: running the demo against the local simulator"
  else
    say "ingesting from ${api_base_url:-<API_BASE_URL not set>}"
  fi
  exec .venv/bin/python ingest.py "$@"
fi

# ---------------------------------------------------------------------------------------------------
# Docker Compose mode. What the ingestion container will see is what Compose reads (the environment,
# then .env): ask Compose, not a reader of our own.
compose_setting() {  # compose_setting NAME: the ingestion service's NAME after Compose's interpolation
  docker compose config --format json | "$PYTHON" -c 'import json, sys
env = json.load(sys.stdin)["services"]["ingestion"].get("environment") or {}
print((env.get(sys.argv[1]) or "").strip())' "$1"
}

api_key=$(compose_setting API_KEY) || die "docker compose config failed (see above)"
api_base_url=$(compose_setting API_BASE_URL)
demo=""
if [ -z "$api_key" ]; then
  demo=1
  # Any key of the API's form is valid on the simulator; a fresh one per run, never written to disk.
  API_KEY="ds_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  API_BASE_URL=$DEMO_BASE_URL
  export API_KEY API_BASE_URL
fi

compose() {
  if [ -n "$demo" ]; then
    docker compose --profile demo "$@"
  else
    docker compose "$@"
  fi
}

# The demo's simulator has served its purpose once the ingester stops; postgres stays up to be queried.
stop_simulator() {
  [ -z "$demo" ] || compose stop simulator >/dev/null 2>&1 || true
}

if [ -n "$subcommand" ]; then
  # In a one-off container of the ingestion service, with this directory as its working directory so
  # that `export --out FILE` and `submit --file FILE` read and write here, as this user.
  case $subcommand in
    verify | export) ;;
    *) [ -z "$demo" ] || { demo=""; unset API_KEY API_BASE_URL; } ;;  # no simulator needed
  esac
  what="python ingest.py $subcommand in a one-off container"
  [ -z "$demo" ] || what="$what, against the demo simulator (no API_KEY configured)"
  say "Docker Compose mode: $what"
  code=0
  compose run --rm --volume "$(pwd):/work" --workdir /work --user "$(id -u):$(id -g)" ingestion "$@" \
    || code=$?
  stop_simulator
  exit "$code"
fi

if [ $# -gt 0 ]; then
  die "arguments are passed to ingest.py only in native mode (RUN_INGESTION_MODE=native sh $0 $*);
in Docker mode set them as variables in .env (CONCURRENCY=..., STRATEGY=...)" 2
fi

if [ -n "$demo" ]; then
  say "Docker Compose mode, demo: no API_KEY configured: the simulator runs in the compose 'demo' profile" \
      "(${SIM_EVENTS:-3000000} events, profile ${SIM_PROFILE:-fast})"
else
  [ -n "$api_base_url" ] || die "API_BASE_URL is not set (environment or .env)" 2
  say "Docker Compose mode, live: ingesting from $api_base_url"
  case $api_base_url in
    *://localhost* | *://127.0.0.1*)
      say "warning: inside the container $api_base_url is the container itself, not this machine" \
          "(use http://host.docker.internal:PORT or the host's address)" ;;
  esac
fi

# A previous run's container would be reused by `up` with its old logs, and their `ingestion complete`.
docker stop -t 30 "$INGESTION_CONTAINER" >/dev/null 2>&1 || true
docker rm "$INGESTION_CONTAINER" >/dev/null 2>&1 || true

compose up -d --build

trap 'echo; say "stopped following; the ingestion goes on in its container (docker logs -f $INGESTION_CONTAINER," \
  "docker compose down to stop it)"; exit 130' INT

count_events() {
  docker exec "$POSTGRES_CONTAINER" psql -U postgres -d ingestion -tAc \
    "SELECT COUNT(*) FROM ingested_events" 2>/dev/null | tr -d '[:space:]'
}

started=$(date +%s)
while true; do
  # The state first, then the logs: a container that had exited before we read its logs has logged all.
  state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$INGESTION_CONTAINER" 2>/dev/null \
          || echo "missing 1")
  logs=$(docker logs "$INGESTION_CONTAINER" 2>&1 || true)
  case $logs in
    *"ingestion complete"*)
      count=$(count_events || true)
      stop_simulator
      say "ingestion complete: ${count:-?} events in ingested_events ($(( $(date +%s) - started )) s)"
      if [ -n "$demo" ]; then
        say "these are the simulator's events: run 'docker compose down -v' before ingesting from a real API"
      fi
      exit 0 ;;
  esac
  case $state in
    exited* | dead* | missing*)
      code=${state#* }
      printf '%s\n' "$logs" | tail -n 20 >&2
      [ "$code" != 0 ] || code=1
      stop_simulator
      die "the ingestion container stopped ($state) without logging 'ingestion complete'" "$code"
      ;;
  esac
  count=$(count_events || true)
  say "$(date +%H:%M:%S) events ingested: ${count:-0} ($(( $(date +%s) - started )) s)"
  sleep "$POLL_S"
done
