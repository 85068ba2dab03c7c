#!/bin/sh
# TEST FIXTURE (see tests/containers/README.md): the entrypoint of the stand-in for postgres:15-alpine,
# built from Debian's postgresql-15. It keeps the official image's contract as docker-compose.yml uses
# it: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGDATA, POSTGRES_HOST_AUTH_METHOD,
# POSTGRES_INITDB_ARGS, /docker-entrypoint-initdb.d; initdb runs once, on an empty PGDATA; the server runs
# as the postgres user and listens on every interface.
set -eu

case ${1-postgres} in
  -*) set -- postgres "$@" ;;  # `docker run IMAGE -c fsync=off` passes server options
esac
[ $# -gt 0 ] || set -- postgres
[ "$1" = postgres ] || exec "$@"

PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA

if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
    echo "error: POSTGRES_PASSWORD is not set (or set POSTGRES_HOST_AUTH_METHOD=trust)" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
  pwopt=--pwfile=$pwfile
  [ -n "${POSTGRES_PASSWORD:-}" ] || pwopt=""
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options, as in the official image
  initdb --username="$user" $pwopt --auth-local=trust --auth-host="$auth" ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  printf 'host all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"
  printf "listen_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

  # The set-up server listens on a private socket only, so pg_isready (the healthcheck) does not pass
  # before the real server runs.
  setup_socket=$(mktemp -d)
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$setup_socket" -w start
  if [ "$db" != postgres ]; then
    # psql quotes the name (:"db"); it does so only in what it reads, not in -c
    echo 'CREATE DATABASE :"db"' | psql -v ON_ERROR_STOP=1 -h "$setup_socket" -U "$user" -d postgres -v db="$db"
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh) echo "running $f"; . "$f" ;;
      *.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 -h "$setup_socket" -U "$user" -d "$db" -f "$f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  rmdir "$setup_socket"
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
