#!/bin/sh
# The one command to ingest: `sh run-ingestion.sh` or `./run-ingestion.sh` (plain POSIX sh: dash, bash,
# busybox sh, zsh's sh mode all run it).
#   With a Docker engine (or, without one, podman with `podman compose` or podman-compose): runs the stack
#   of docker-compose.yml, follows it and returns when the ingestion container logs `ingestion complete`
#   (like the assignment's own script). PostgreSQL (and the demo's simulator) start first; the ingestion
#   starts once their healthchecks pass, on any engine (podman runs none by itself without systemd).
#   Without either: runs natively in .venv with the embedded PostgreSQL (or DATABASE_URL).
#   With no API_KEY (environment, .env or --api-key): runs the demo against the local simulator.
# Subcommands go to `python ingest.py` in either mode: status, verify, export, submit (verify and export
# check against the demo simulator when no API_KEY is configured). Other arguments go to
# `python ingest.py` in native mode, e.g. sh run-ingestion.sh --concurrency 4
# RUN_INGESTION_MODE=native|docker|podman forces a mode (docker and podman: that engine's Compose);
# RUN_INGESTION_POLL_S sets the progress interval in container mode.
set -eu
cd "$(dirname "$0")"

INGESTION_CONTAINER=assignment-ingestion
POSTGRES_CONTAINER=assignment-postgres
DEMO_BASE_URL=http://simulator:8080  # the simulator service of the compose `demo` profile
SIMULATOR_CONTAINER=assignment-simulator
POLL_S=${RUN_INGESTION_POLL_S:-5}    # seconds between progress lines in container mode
# seconds to wait for postgres (and the simulator) to pass their healthchecks: more than the compose
# file's own allowance (5 s of start period, then 30 retries 2 s apart) on a slow first start
HEALTH_TIMEOUT_S=180
HEALTH_POLL_S=1  # seconds between two healthchecks while waiting
PYTHON=${PYTHON:-python3}

say() { printf 'run-ingestion: %s\n' "$*"; }
die() { printf 'run-ingestion: error: %s\n' "$1" >&2; exit "${2:-1}"; }  # die MESSAGE [EXIT_CODE]

subcommand=""
case ${1-} in
  -* | "") ;;
  *) subcommand=$1 ;;  # status, verify, export, submit...: passed to ingest.py, never turned into a run
esac

answers() {  # answers ENGINE: its client is installed and an engine behind it answers
  command -v "$1" >/dev/null 2>&1 && "$1" info >/dev/null 2>&1
}

# podman's Compose: `podman compose` (podman >= 4.7, with a provider installed), else podman-compose.
# Sets compose_tool, or returns 1.
find_podman_compose() {
  if podman compose version >/dev/null 2>&1; then
    compose_tool="podman compose"
  elif podman-compose version >/dev/null 2>&1; then
    compose_tool=podman-compose
  else
    return 1
  fi
}

# engine: docker or podman, for exec, inspect, logs, stop, rm; compose_tool: what runs docker-compose.yml.
mode=${RUN_INGESTION_MODE:-auto}
case $mode in
  auto)
    mode=native native_reason=""
    if answers docker; then
      if docker compose version >/dev/null 2>&1; then
        mode=docker
      else
        native_reason="a Docker engine answers but the compose plugin is missing"
      fi
    fi
    if [ "$mode" = native ] && answers podman; then
      if find_podman_compose; then
        mode=podman
        say "${native_reason:-no Docker engine answers}: using podman with $compose_tool"
      else
        native_reason="${native_reason:-no Docker engine answers}; podman answers but has neither"
        native_reason="$native_reason \`podman compose\` nor podman-compose"
      fi
    fi
    : "${native_reason:=no Docker engine or podman answers}"
    ;;
  docker) ;;
  podman)
    find_podman_compose || die "RUN_INGESTION_MODE=podman: neither \`podman compose\` nor podman-compose works" 2
    ;;
  native) native_reason="RUN_INGESTION_MODE=native" ;;
  *) die "RUN_INGESTION_MODE must be auto, docker, podman or native, got '$mode'" 2 ;;
esac
case $mode in
  docker) engine=docker compose_tool="docker compose" mode_name="Docker Compose mode" ;;
  podman) engine=podman mode_name="podman Compose mode ($compose_tool)" ;;
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
# Container mode (Docker, or podman). What the ingestion container will see is what Compose reads (the
# environment, then .env): ask Compose, not a reader of our own.
compose_tool_run() {  # the engine's Compose without the profile: compose_tool_run ARGS...
  case $compose_tool in
    "docker compose") docker compose "$@" ;;
    "podman compose") podman compose "$@" ;;
    podman-compose) podman-compose "$@" ;;
  esac
}

# docker compose prints JSON; podman-compose only YAML, which its own interpreter reads (PyYAML is one of
# its dependencies; ours may lack it).
config_python=$PYTHON
if [ "$compose_tool" = podman-compose ]; then
  read -r shebang < "$(command -v podman-compose)" || shebang=""
  case $shebang in
    *" "*) ;;  # `#!/usr/bin/env python3`: not one path
    "#!/"*python*) config_python=${shebang#??} ;;
  esac
fi

compose_config() {
  compose_tool_run config --format json 2>/dev/null || compose_tool_run config
}

compose_setting() {  # compose_setting NAME: the ingestion service's NAME after Compose's interpolation
  compose_config | "$config_python" -c 'import json, sys
text = sys.stdin.read()
config = json.loads(text) if text.lstrip().startswith("{") else __import__("yaml").safe_load(text)
env = config["services"]["ingestion"].get("environment") or {}
print((env.get(sys.argv[1]) or "").strip())' "$1"
}

api_key=$(compose_setting API_KEY) || die "$compose_tool config failed (see above)"
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
    compose_tool_run --profile demo "$@"
  else
    compose_tool_run "$@"
  fi
}

# The demo's simulator has served its purpose once the ingester stops; postgres stays up to be queried.
stop_simulator() {
  [ -z "$demo" ] || compose stop simulator >/dev/null 2>&1 || true
}

healthy() {  # healthy CONTAINER: its compose healthcheck passes now
  case $engine in
    # podman runs healthchecks on a systemd timer only, so there may be no status to read: run it.
    podman) podman healthcheck run "$1" >/dev/null 2>&1 ;;
    docker) [ "$(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" = healthy ] ;;
  esac
}

# Starts the services the ingestion container depends on and returns when their healthchecks pass.
# Compose's `depends_on: condition: service_healthy` says the same, but podman does not honour it
# without systemd, and an ingester that starts first fails on its database connection. The ingestion
# container then starts with --no-deps: podman-compose's own start of the dependencies could recreate
# them (its `run` even removes "orphans", postgres included, outside the demo profile).
start_dependencies() {
  set -- "$POSTGRES_CONTAINER"
  if [ -n "$demo" ]; then
    set -- "$@" "$SIMULATOR_CONTAINER"
    compose up -d postgres simulator
  else
    compose up -d postgres
  fi
  deadline=$(( $(date +%s) + HEALTH_TIMEOUT_S ))
  for container in "$@"; do
    until healthy "$container"; do
      state=$($engine inspect -f '{{.State.Status}}' "$container" 2>/dev/null || echo missing)
      problem=""
      [ "$(date +%s)" -lt "$deadline" ] || problem="did not pass its healthcheck within $HEALTH_TIMEOUT_S s"
      [ "$state" = running ] || problem="stopped ($state) before passing its healthcheck"
      if [ -n "$problem" ]; then
        $engine logs "$container" 2>&1 | tail -n 20 >&2
        die "$container $problem"
      fi
      sleep "$HEALTH_POLL_S"
    done
  done
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
  say "$mode_name: $what"
  start_dependencies
  code=0
  compose run --rm --no-deps --volume "$(pwd):/work" --workdir /work --user "$(id -u):$(id -g)" ingestion "$@" \
    || code=$?
  stop_simulator
  exit "$code"
fi

if [ $# -gt 0 ]; then
  die "arguments are passed to ingest.py only in native mode (RUN_INGESTION_MODE=native sh $0 $*);
in container mode set them as variables in .env (CONCURRENCY=..., STRATEGY=...)" 2
fi

if [ -n "$demo" ]; then
  say "$mode_name, demo: no API_KEY configured: the simulator runs in the compose 'demo' profile" \
      "(${SIM_EVENTS:-3000000} events, profile ${SIM_PROFILE:-fast})"
else
  [ -n "$api_base_url" ] || die "API_BASE_URL is not set (environment or .env)" 2
  say "$mode_name, live: ingesting from $api_base_url"
  case $api_base_url in
    *://localhost* | *://127.0.0.1*)
      say "warning: inside the container $api_base_url is the container itself, not this machine" \
          "(use http://host.docker.internal:PORT or the host's address)" ;;
  esac
fi

# A previous run's container would be reused by `up` with its old logs, and their `ingestion complete`.
$engine stop -t 30 "$INGESTION_CONTAINER" >/dev/null 2>&1 || true
$engine rm "$INGESTION_CONTAINER" >/dev/null 2>&1 || true

compose build
start_dependencies
compose up -d --no-deps ingestion

trap 'echo; say "stopped following; the ingestion goes on in its container ($engine logs -f $INGESTION_CONTAINER," \
  "$compose_tool down to stop it)"; exit 130' INT

count_events() {
  $engine exec "$POSTGRES_CONTAINER" psql -U postgres -d ingestion -tAc \
    "SELECT COUNT(*) FROM ingested_events" 2>/dev/null | tr -d '[:space:]'
}

started=$(date +%s)
while true; do
  # The state first, then the logs: a container that had exited before we read its logs has logged all.
  state=$($engine inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$INGESTION_CONTAINER" 2>/dev/null \
          || echo "missing 1")
  logs=$($engine logs "$INGESTION_CONTAINER" 2>&1 || true)
  case $logs in
    *"ingestion complete"*)
      count=$(count_events || true)
      stop_simulator
      say "ingestion complete: ${count:-?} events in ingested_events ($(( $(date +%s) - started )) s)"
      if [ -n "$demo" ]; then
        say "these are the simulator's events: run '$compose_tool down -v' before ingesting from a real API"
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
