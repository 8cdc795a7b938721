#!/usr/bin/env bash
# The project's PostgreSQL, from Debian's packages, on a free local port, with no Docker.
#
#   scripts/postgres.sh start    install if missing (needs root), init and start; prints the store URL
#   scripts/postgres.sh url      prints the store URL of the owner role (seeds the store: APPAREL_STORE_DB)
#   scripts/postgres.sh read-url prints the store URL of the read-only role (the extraction: APPAREL_STORE_READ_DB)
#   scripts/postgres.sh stop     stops it (the data directory stays)
#   scripts/postgres.sh status
#   scripts/postgres.sh dir      prints its data folder ($APPAREL_PG_DIR)
#
# Data, socket and log live in $APPAREL_PG_DIR (default .services/postgres, git-ignored; see default_dir when
# the checkout is in a private directory and the script runs as root). The port is
# $APPAREL_PG_PORT, or a free one chosen at the first start and kept in $APPAREL_PG_DIR/port.
# It runs with logical WAL and has a capture role (APPAREL_CDC_USER, default apparel_cdc) for change data capture.
# Roles (README "Least privilege"): apparel owns the database `apparel` and seeds it; apparel_reader logs in,
# reads what the owner creates there (default privileges: SELECT on its tables) and can write nothing.
# Authentication is `trust` on 127.0.0.1 only: a local development/test server. Point APPAREL_STORE_DB at a
# real server (with a password) for anything else.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Run as root, the server runs as the postgres user, which must be able to reach its data directory. A checkout
# under a private directory (`mktemp -d` makes mode 700) is out of its reach: then the default data directory
# is one of this checkout's own under /var/tmp (named by a hash of the checkout's path, so every command finds
# the same one).
reachable_by_others() {
  local p=$1
  while [ "$p" != / ]; do
    case "$(stat -c %A "$p")" in *x) ;; *) return 1 ;; esac
    p=$(dirname "$p")
  done
}
default_dir() {
  if [ "$(id -u)" -eq 0 ] && ! reachable_by_others "$ROOT"; then
    echo "/var/tmp/apparel-postgres-$(printf %s "$ROOT" | sha256sum | cut -c1-12)"
  else
    echo "$ROOT/.services/postgres"
  fi
}
DIR=${APPAREL_PG_DIR:-$(default_dir)}
DATA=$DIR/data
LOG=$DIR/postgres.log
PG_VERSION=${APPAREL_PG_VERSION:-15}
DB_USER=apparel
DB_NAME=apparel
READ_USER=apparel_reader
CDC_USER=${APPAREL_CDC_USER:-apparel_cdc}

say() { echo "[postgres] $*" >&2; }

pg_bin() {
  local bin=/usr/lib/postgresql/$PG_VERSION/bin
  if [ ! -x "$bin/initdb" ]; then
    if [ "$(id -u)" -ne 0 ]; then
      say "PostgreSQL $PG_VERSION is not installed; run: sudo apt-get install -y postgresql-$PG_VERSION"
      exit 1
    fi
    say "installing postgresql-$PG_VERSION from Debian's packages"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$PG_VERSION" >&2
  fi
  echo "$bin"
}

# run as the postgres user when we are root (PostgreSQL refuses to run as root)
as_owner() {
  # from /: the working directory may be one the postgres user cannot enter
  if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port() {
  if [ -n "${APPAREL_PG_PORT:-}" ]; then echo "$APPAREL_PG_PORT"; return; fi
  if [ ! -s "$DIR/port" ]; then free_port > "$DIR/port"; fi
  cat "$DIR/port"
}

url() { echo "postgresql://${1:-$DB_USER}@127.0.0.1:$(port)/$DB_NAME"; }

# Logical WAL so that change data capture (Debezium, README "Real-time path") can read the store; a slot may
# hold at most 1 GB of WAL, so a capture left stopped never fills the disk (the slot is invalidated instead).
server_options() {
  echo "-c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50 -c wal_level=logical" \
       "-c max_wal_senders=10 -c max_replication_slots=10 -c max_slot_wal_keep_size=1GB"
}

running() { [ -f "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

cmd=${1:-start}
mkdir -p "$DIR"
case "$cmd" in
  start)
    BIN=$(pg_bin)
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$DIR"; fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
      say "initialising $DATA"
      as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    if running && [ "$(as_owner "$BIN/psql" -h 127.0.0.1 -p "$(port)" -U postgres -qAt -c 'SHOW wal_level' 2>/dev/null)" != logical ]; then
      say "restarting: the running server has no logical WAL (a server from an older checkout)"
      as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
    fi
    if running; then
      say "already running on port $(port)"
    else
      P=$(port)
      say "starting on 127.0.0.1:$P (log: $LOG)"
      touch "$LOG"; if [ "$(id -u)" -eq 0 ]; then chown postgres "$LOG"; fi
      as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start -o "-p $P -k $DIR $(server_options)" >/dev/null
    fi
    P=$(port)
    for _ in $(seq 1 60); do
      if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$P"; then break; fi
      sleep 0.5
    done
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$P" || { say "not ready; see $LOG"; tail -20 "$LOG" >&2; exit 1; }
    psql() { "$BIN/psql" -h 127.0.0.1 -p "$P" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"; }
    if [ "$(psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" != 1 ]; then
      psql -c "CREATE ROLE $DB_USER LOGIN CREATEDB"
    fi
    if [ "$(psql -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
      psql -c "CREATE DATABASE $DB_NAME OWNER $DB_USER"
    fi
    # the extraction's role: SELECT on every table the owner creates in the store database, nothing else
    if [ "$(psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$READ_USER'")" != 1 ]; then
      psql -c "CREATE ROLE $READ_USER LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
    fi
    psql -d "$DB_NAME" -c "ALTER DEFAULT PRIVILEGES FOR ROLE $DB_USER IN SCHEMA public GRANT SELECT ON TABLES TO $READ_USER"
    # the capture role (change data capture): REPLICATION needs a superuser to grant; `apparel cdc prepare`
    # then gives it SELECT on the five store tables of a database, and nothing else
    if [ "$(psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$CDC_USER'")" != 1 ]; then
      psql -c "CREATE ROLE $CDC_USER LOGIN REPLICATION"
    fi
    url
    ;;
  url)
    url
    ;;
  dir)
    echo "$DIR"
    ;;
  read-url)
    url "$READ_USER"
    ;;
  status)
    BIN=$(pg_bin)
    if running; then say "running: $(url)"; else say "stopped"; exit 3; fi
    ;;
  stop)
    BIN=$(pg_bin)
    if running; then as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; say "stopped"; else say "not running"; fi
    ;;
  *)
    echo "usage: $0 {start|stop|status|url|read-url|dir}" >&2; exit 2
    ;;
esac
