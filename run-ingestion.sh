#!/usr/bin/env bash
# The one command to ingest.
#   With a Docker engine: runs the stack of docker-compose.yml, follows it and returns when the ingestion
#   container logs `ingestion complete` (like the assignment's own script).
#   Without one: runs natively in .venv with the embedded PostgreSQL (or DATABASE_URL).
#   With no API_KEY (environment, .env or --api-key): runs the demo against the local simulator.
# Extra arguments go to `python ingest.py` (native mode only), e.g. ./run-ingestion.sh --concurrency 4
# RUN_INGESTION_MODE=native|docker forces a mode; RUN_INGESTION_POLL_S sets the Docker progress interval.
set -euo pipefail
cd "$(dirname "$0")"

INGESTION_CONTAINER=assignment-ingestion
POSTGRES_CONTAINER=assignment-postgres
DEMO_BASE_URL=http://simulator:8080  # the simulator service of the compose `demo` profile
POLL_S=${RUN_INGESTION_POLL_S:-5}    # seconds between progress lines in Docker mode

say() { printf 'run-ingestion: %s\n' "$*"; }
die() { printf 'run-ingestion: error: %s\n' "$1" >&2; exit "${2:-1}"; }  # die MESSAGE [EXIT_CODE]

# The value of NAME in a .env file, as python-dotenv reads the simple cases: last assignment wins,
# optional `export `, surrounding quotes removed, ` # comment` after an unquoted value dropped.
dotenv_value() {
  local file=$1 name=$2 line value=""
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[![:space:]]*}"}
    line=${line#export }
    case $line in
      "$name="* | "$name "*=*) ;;
      *) continue ;;
    esac
    value=${line#*=}
    value=${value#"${value%%[![:space:]]*}"}
    case $value in
      \"*\"*) value=${value#\"}; value=${value%%\"*} ;;
      \'*\'*) value=${value#\'}; value=${value%%\'*} ;;
      *) value=${value%%[[:space:]]#*}; value=${value%"${value##*[![:space:]]}"} ;;
    esac
  done <"$file"
  printf '%s' "$value"
}

# A setting as the ingester will see it: the environment wins over the .env file (even when empty).
setting() {
  local name=$1
  if [ -n "${!name+set}" ]; then
    printf '%s' "${!name}"
  else
    dotenv_value "$env_file" "$name"
  fi
}

# What the arguments say: which .env the ingester reads, whether --api-key is given, subcommands.
env_file=.env
key_flag=""
subcommand=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  subcommand=$1  # status, verify, submit...: passed straight to ingest.py, never turned into a demo
fi
prev=""
for arg in "$@"; do
  case $prev in
    --env-file) env_file=$arg ;;
    --api-key) key_flag=$arg ;;
  esac
  case $arg in
    --env-file=*) env_file=${arg#--env-file=} ;;
    --api-key=*) key_flag=${arg#--api-key=} ;;
  esac
  prev=$arg
done

api_key=${key_flag:-$(setting API_KEY)}
api_key=${api_key//[[:space:]]/}
api_base_url=$(setting API_BASE_URL)

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
  cmd=(.venv/bin/python ingest.py)
  if [ -n "$subcommand" ]; then
    say "native mode ($native_reason): python ingest.py $subcommand"
  elif [ -z "$api_key" ]; then
    say "native mode ($native_reason): no API_KEY configured: running the demo against the local simulator"
    cmd+=(--demo)
  else
    say "native mode ($native_reason): ingesting from ${api_base_url:-<API_BASE_URL not set>}"
  fi

  PYTHON=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $PYTHON"
    "$PYTHON" -m venv .venv
  fi
  # run-tests.sh's stamp covers requirements.txt too (requirements-dev.txt includes it); ours covers
  # only the runtime pins, so running the ingester never installs the test tools.
  dev_stamp=.venv/.requirements-installed
  runtime_stamp=.venv/.runtime-requirements-installed
  if ! { [ -f "$dev_stamp" ] && [ -f requirements-dev.txt ] \
           && cmp -s <(cat requirements.txt requirements-dev.txt) "$dev_stamp"; } \
     && ! { [ -f "$runtime_stamp" ] && cmp -s requirements.txt "$runtime_stamp"; }; then
    say "installing requirements.txt into .venv"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    cp requirements.txt "$runtime_stamp"
  fi
  exec "${cmd[@]}" "$@"
fi

# ---------------------------------------------------------------------------------------------------
# Docker Compose mode.
if [ $# -gt 0 ]; then
  die "arguments are passed to ingest.py only in native mode (RUN_INGESTION_MODE=native $0 $*);
in Docker mode set them as variables in .env (CONCURRENCY=..., STRATEGY=...)" 2
fi

compose=(docker compose)
demo=""
if [ -z "$api_key" ]; then
  demo=1
  # Any key of the API's form is valid on the simulator; a fresh one per run, never written to disk.
  api_key="ds_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  export API_KEY=$api_key
  export API_BASE_URL=$DEMO_BASE_URL
  compose+=(--profile demo)
  say "Docker Compose mode, demo: no API_KEY configured: the simulator runs in the compose 'demo' profile" \
      "(${SIM_EVENTS:-3000000} events, profile ${SIM_PROFILE:-fast})"
else
  [ -n "$api_base_url" ] || die "API_BASE_URL is not set (environment or $env_file)" 2
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

"${compose[@]}" up -d --build

trap 'echo; say "stopped following; the ingestion goes on in its container (docker logs -f $INGESTION_CONTAINER," \
  "docker compose down to stop it)"; exit 130' INT

count_events() {
  docker exec "$POSTGRES_CONTAINER" psql -U postgres -d ingestion -tAc \
    "SELECT COUNT(*) FROM ingested_events" 2>/dev/null | tr -d '[:space:]'
}

# The demo's simulator has served its purpose once the ingester stops; postgres stays up to be queried.
stop_simulator() {
  [ -z "$demo" ] || "${compose[@]}" stop simulator >/dev/null 2>&1 || true
}

started=$SECONDS
while true; do
  # The state first, then the logs: a container that had exited before we read its logs has logged all.
  state=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$INGESTION_CONTAINER" 2>/dev/null \
          || echo "missing 1")
  logs=$(docker logs "$INGESTION_CONTAINER" 2>&1 || true)
  if [[ $logs == *"ingestion complete"* ]]; then
    count=$(count_events || true)
    stop_simulator
    say "ingestion complete: ${count:-?} events in ingested_events ($((SECONDS - started)) s)"
    if [ -n "$demo" ]; then
      say "these are the simulator's events: run 'docker compose down -v' before ingesting from a real API"
    fi
    exit 0
  fi
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
  say "$(date +%H:%M:%S) events ingested: ${count:-0} ($((SECONDS - started)) s)"
  sleep "$POLL_S"
done
