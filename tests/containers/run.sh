#!/usr/bin/env bash
# The container test (see README.md beside this file): build the project's image from its Dockerfile,
# run the demo in it with the embedded and with an external PostgreSQL, run the Compose stack through
# `sh run-ingestion.sh` on podman, and check the rows through the published port. Needs root where
# podman, mmdebstrap or podman-compose are missing (it installs them). Ends with one line
# `containers: N passed, N failed`; exit 0 only when every check passed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/containers
export CONTAINERS_CONF=$HERE/containers.conf

DEMO_EVENTS=20000
APT_PACKAGES=(podman runc mmdebstrap uidmap slirp4netns fuse-overlayfs)
COMPOSE_VENV=/tmp/datasync-podman-compose-venv  # kept between runs: the pins are its stamp
HOST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432  # the machine's PostgreSQL 15, trust auth
TEST_DATABASE=datasync_containers_test
STACK_CONTAINERS=(assignment-ingestion assignment-simulator assignment-postgres)
STACK_VOLUMES=(datasync-ingest_postgres-data datasync-ingest_ingestion-data)  # Compose: <project>_<volume>
STACK_NETWORK=assignment-network
STACK_POD=pod_datasync-ingest  # podman-compose puts the stack's containers in a pod of the project's name
STACK_PORT=5434
PULL_TIMEOUT_S=60
FIXTURE_LABEL=datasync.test-fixture

started=$(date +%s)
passed=0 failed=0
log() { printf '[containers %3d s] %s\n' "$(( $(date +%s) - started ))" "$*"; }
check() {  # check DESCRIPTION COMMAND...: one check, counted
  if "${@:2}"; then
    passed=$((passed + 1)); log "ok: $1"
  else
    failed=$((failed + 1)); log "FAILED: $1"
  fi
}
contains() { grep -qF -- "$2" <<<"$1"; }
equals() { [ "$1" = "$2" ]; }

# --- tools ------------------------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null; }
fi
log "$(dpkg-query -W -f='${Package} ${Version}, ' "${APT_PACKAGES[@]}")"

if ! cmp -s "$HERE/podman-compose-requirements.txt" "$COMPOSE_VENV/.installed" 2>/dev/null; then
  log "installing podman-compose into $COMPOSE_VENV"
  rm -rf "$COMPOSE_VENV"
  python3 -m venv "$COMPOSE_VENV"
  "$COMPOSE_VENV/bin/pip" install --quiet --disable-pip-version-check \
    -r "$HERE/podman-compose-requirements.txt"
  cp "$HERE/podman-compose-requirements.txt" "$COMPOSE_VENV/.installed"
fi
# Only podman-compose goes on PATH, not the venv's python3.
mkdir -p "$COMPOSE_VENV/on-path"
ln -sf "$COMPOSE_VENV/bin/podman-compose" "$COMPOSE_VENV/on-path/podman-compose"
export PATH=$COMPOSE_VENV/on-path:$PATH
log "$(podman --version), $(podman-compose version | head -n 1)"

# --- clean state, before and after -----------------------------------------------------------------------
cleanup() {
  local container
  for container in "${STACK_CONTAINERS[@]}"; do  # one by one: podman refuses to remove a dependency first
    podman rm -f -t 5 "$container" >/dev/null 2>&1 || true
  done
  podman pod rm -f "$STACK_POD" >/dev/null 2>&1 || true
  podman volume rm -f "${STACK_VOLUMES[@]}" >/dev/null 2>&1 || true
  podman network rm -f "$STACK_NETWORK" >/dev/null 2>&1 || true
  psql "$HOST_DATABASE_URL/postgres" -qc "DROP DATABASE IF EXISTS $TEST_DATABASE" >/dev/null 2>&1 || true
}
cleanup
trap cleanup EXIT

# --- base images: the real ones, else the stand-ins (test fixtures) ---------------------------------------
# mmdebstrap takes the host's Debian sources (the CI machines reach Debian's packages, not Docker Hub).
SOURCES=()
[ -f /etc/apt/sources.list.d/debian.sources ] && SOURCES=(/etc/apt/sources.list.d/debian.sources)

# base_image IMAGE RECIPE-FUNCTION [FILE...]: IMAGE as it is when present and not one of our stand-ins, or
# pulled, else the stand-in built by RECIPE-FUNCTION, rebuilt when the recipe's text or its FILEs change.
base_image() {
  local image=$1 recipe=$2 fixture label
  fixture=standin-$( { declare -f "$recipe"; cat "${@:3}"; } | sha256sum | cut -c1-16)
  if podman image exists "$image"; then
    label=$(podman image inspect -f "{{index .Config.Labels \"$FIXTURE_LABEL\"}}" "$image")
    case $label in
      "$fixture") log "$image: the stand-in, up to date"; return ;;
      standin-*) ;;
      *) log "$image: present (not a stand-in)"; return ;;
    esac
  elif timeout "$PULL_TIMEOUT_S" podman pull -q "$image" >/dev/null 2>&1; then
    log "$image: pulled"; return
  fi
  log "$image: cannot be pulled; building the stand-in (test fixture)"
  local tar
  tar=$(mktemp --suffix=.tar)
  "$recipe" "$tar" "$image" "$fixture"
  rm -f "$tar"
}

python_standin() {  # TAR IMAGE LABEL
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$1" "${SOURCES[@]}"
  podman import -q \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL $FIXTURE_LABEL=$3" \
    --change 'CMD ["python3"]' \
    "$1" "$2" >/dev/null
}

postgres_standin() {  # TAR IMAGE LABEL
  # No cluster of Debian's own: the entrypoint creates one in PGDATA, once.
  mmdebstrap --quiet --variant=minbase --include=postgresql-15 \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --customize-hook='rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"' \
    --customize-hook="copy-in $HERE/postgres/docker-entrypoint.sh /usr/local/bin" \
    bookworm "$1" "${SOURCES[@]}"
  podman import -q \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PGDATA=/var/lib/postgresql/data' \
    --change 'VOLUME /var/lib/postgresql/data' \
    --change 'EXPOSE 5432' \
    --change 'STOPSIGNAL SIGINT' \
    --change "LABEL $FIXTURE_LABEL=$3" \
    --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
    --change 'CMD ["postgres"]' \
    "$1" "$2" >/dev/null
}

base_image docker.io/library/python:3.11-slim-bookworm python_standin
base_image docker.io/library/postgres:15-alpine postgres_standin "$HERE/postgres/docker-entrypoint.sh"

# --- the project's image, from its Dockerfile as it is ----------------------------------------------------
# pip in the build reaches the package index as pip does on this machine: its configuration and CA
# file, mounted read-only for the build only (nothing of it lands in the image).
build_mounts=()
[ -f /etc/pip.conf ] && build_mounts+=(-v /etc/pip.conf:/etc/pip.conf:ro)
certs=$( { printf '%s\n' "${PIP_CERT:-}"; python3 -m pip config list 2>/dev/null \
           | sed -n "s/^[^=]*\.cert='\(.*\)'$/\1/p"; } | sort -u)
for cert in $certs; do
  [ -f "$cert" ] && build_mounts+=(-v "$cert:$cert:ro")
done
log "building datasync-ingest:local (podman build --network=host ${build_mounts[*]})"
podman build -q --network=host "${build_mounts[@]}" -t datasync-ingest:local . >/dev/null
check "the Dockerfile builds" podman image exists datasync-ingest:local

# --- the demo in the image --------------------------------------------------------------------------------
grouped=$(python3 -c "print(f'{$DEMO_EVENTS:,}')")  # 20,000, as the ingester prints it
complete="ingestion complete: $grouped events"
out=$(podman run --rm datasync-ingest:local --demo --demo-events "$DEMO_EVENTS" 2>&1) || true
check "demo with the embedded PostgreSQL: ingestion complete" contains "$out" "$complete"
check "demo with the embedded PostgreSQL: verify complete" contains "$out" "verify: complete"

psql "$HOST_DATABASE_URL/postgres" -qc "CREATE DATABASE $TEST_DATABASE" >/dev/null
out=$(podman run --rm --network=host -e "DATABASE_URL=$HOST_DATABASE_URL/$TEST_DATABASE" \
        datasync-ingest:local --demo --demo-events "$DEMO_EVENTS" 2>&1) || true
check "demo with the host's PostgreSQL: ingestion complete" contains "$out" "$complete"
check "demo with the host's PostgreSQL: verify complete" contains "$out" "verify: complete"
rows=$(psql "$HOST_DATABASE_URL/$TEST_DATABASE" -tAc "SELECT COUNT(*) FROM ingested_events" 2>&1) || true
check "demo with the host's PostgreSQL: $DEMO_EVENTS rows there ($rows)" equals "$rows" "$DEMO_EVENTS"
psql "$HOST_DATABASE_URL/postgres" -qc "DROP DATABASE $TEST_DATABASE" >/dev/null

# --- the Compose stack through run-ingestion.sh -----------------------------------------------------------
# The demo, whatever a .env here says: an empty API_KEY in the environment wins over .env for Compose.
export API_KEY="" SIM_EVENTS=$DEMO_EVENTS SIM_PROFILE=fast RUN_INGESTION_POLL_S=2
log "sh run-ingestion.sh (SIM_EVENTS=$SIM_EVENTS)"
code=0
out=$(sh run-ingestion.sh 2>&1) || code=$?
printf '%s\n' "$out" | grep '^run-ingestion:' || true
check "run-ingestion.sh exits 0 ($code)" equals "$code" 0
check "run-ingestion.sh chose podman" contains "$out" "using podman with podman-compose"
exit_code=$(podman wait assignment-ingestion 2>&1) || true
check "the ingestion container exits 0 ($exit_code)" equals "$exit_code" 0
rows=$(PGPASSWORD=postgres psql -h 127.0.0.1 -p "$STACK_PORT" -U postgres -d ingestion -tAc \
         "SELECT COUNT(*) FROM ingested_events" 2>&1) || true
check "127.0.0.1:$STACK_PORT holds $DEMO_EVENTS events ($rows)" equals "$rows" "$DEMO_EVENTS"
out=$(sh run-ingestion.sh status 2>&1) || true
check "status in a container: $grouped events stored" contains "$out" "events stored: $grouped"
out=$(sh run-ingestion.sh verify 2>&1) || true
check "verify in a container: complete" contains "$out" "verify: complete"

log "done"
echo "containers: $passed passed, $failed failed"
[ "$failed" = 0 ]
