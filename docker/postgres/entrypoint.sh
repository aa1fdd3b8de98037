#!/bin/sh
# First start: initdb with POSTGRES_USER / POSTGRES_PASSWORD (scram-sha-256) and create POSTGRES_DB, as the
# official image does; then PostgreSQL in the foreground (PID 1: SIGINT = fast shutdown, the STOPSIGNAL).
# The data directory is the volume: a later start (an upgrade of the stack) keeps the database as it is.
set -eu
BIN=$(cat /etc/postgresql-bin)
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}" "${PGDATA:=/var/lib/postgresql/data}" "${PGPORT:=5432}"
if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "forge-postgres: POSTGRES_PASSWORD is not set" >&2
  exit 2
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  "$BIN/initdb" -D "$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  if [ "$POSTGRES_DB" != "postgres" ]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" \
      | "$BIN/postgres" --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "forge-postgres: initialised $PGDATA (database $POSTGRES_DB, user $POSTGRES_USER)"
fi
exec "$BIN/postgres" -D "$PGDATA" -p "$PGPORT" -c listen_addresses="${POSTGRES_LISTEN:-*}" \
  -c unix_socket_directories=/var/run/postgresql
