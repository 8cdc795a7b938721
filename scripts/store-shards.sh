#!/usr/bin/env bash
# The sharded store database, natively: a coordinator PostgreSQL and APPAREL_STORE_SHARDS shard servers (default 2),
# then the layout (`python -m apparel.shards prepare`: orders and order_details hash partitioned by order_id over
# the shards through postgres_fdw; the reference tables on the coordinator). docs/topology.md describes it.
#
# With APPAREL_STORE_STANDBYS=1 each shard is a pg_auto_failover formation instead (Debian's
# postgresql-15-auto-failover, installed when missing): a primary and a hot standby fed by streaming replication
# (pg_auto_failover runs pg_basebackup and keeps a replication slot), both kept by a `pg_autoctl run` keeper, and
# one monitor for all the shards that promotes a standby when its primary fails. The coordinator and the pipeline
# reach a shard through a URL naming both nodes, so a promotion needs no DDL.
#
#   scripts/store-shards.sh start    start the servers, lay the tables out; prints the coordinator's store URL
#   scripts/store-shards.sh stop     stops them (data stays)
#   scripts/store-shards.sh status
#   scripts/store-shards.sh url      the coordinator's URL (APPAREL_STORE_DB: seed and simulate write there)
#   scripts/store-shards.sh read-url the coordinator's URL for the read-only role (APPAREL_STORE_READ_DB: the
#                                    master tables bronze reads there)
#   scripts/store-shards.sh shard-urls   one URL per shard, the owner's (all of a shard's nodes)
#   scripts/store-shards.sh read-urls    one URL per shard, the read-only role's (APPAREL_STORE_SHARD_URLS: what
#                                        bronze reads orders and order_details from)
# With standbys, also:
#   scripts/store-shards.sh state                  every node's role as the monitor sees it
#   scripts/store-shards.sh stop-node K N [--immediate]   stop node N (0: the first primary) of shard K, its
#                                        keeper and its PostgreSQL (--immediate: as if the machine died)
#   scripts/store-shards.sh start-node K N   start it again (a former primary rejoins as a standby)
#   scripts/store-shards.sh wait-primary K [SECONDS]   wait until shard K has a primary that takes writes
#
# Ports: the coordinator on APPAREL_STORE_SHARDS_PORT (default 55500), shard k on that port + k; with standbys,
# shard k's node n on that port + k + 10 n and the monitor on that port + 20 (so at most 9 shards). A primary that
# fails its health checks for APPAREL_STORE_FAILOVER_TIMEOUT_MS (default 20000, pg_auto_failover's own) is replaced
# by its standby once it has not stepped down for that long again (pg_auto_failover: 30000).
# Data: beside the project's single server's folder (`scripts/postgres.sh dir`), with -shards appended.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARDS=${APPAREL_STORE_SHARDS:-2}
STANDBYS=${APPAREL_STORE_STANDBYS:-0}
BASE_PORT=${APPAREL_STORE_SHARDS_PORT:-55500}
BASE_DIR=${APPAREL_STORE_SHARDS_DIR:-$(APPAREL_PG_DIR= bash "$HERE/postgres.sh" dir)-shards}
FAILOVER_MS=${APPAREL_STORE_FAILOVER_TIMEOUT_MS:-20000}
PG_VERSION=${APPAREL_PG_VERSION:-15}
PGBIN=/usr/lib/postgresql/$PG_VERSION/bin
DB=apparel OWNER=apparel READER=apparel_reader CDC_USER=${APPAREL_CDC_USER:-apparel_cdc}

say() { echo "[store-shards] $*" >&2; }
[[ "$SHARDS" =~ ^[0-9]+$ ]] && [ "$SHARDS" -ge 2 ] || { say "APPAREL_STORE_SHARDS=$SHARDS: a sharded store has 2 shards or more"; exit 2; }
[[ "$STANDBYS" =~ ^[01]$ ]] || { say "APPAREL_STORE_STANDBYS=$STANDBYS: 0 or 1 standby per shard"; exit 2; }
[ "$STANDBYS" = 0 ] || [ "$SHARDS" -le 9 ] || { say "with standbys, at most 9 shards (ports)"; exit 2; }

# server NAME PORT COMMAND: scripts/postgres.sh COMMAND for one of the plain servers
server() { APPAREL_PG_DIR=$BASE_DIR/$1 APPAREL_PG_PORT=$2 bash "$HERE/postgres.sh" "$3"; }
coordinator_url() { server coordinator "$BASE_PORT" url; }

# --- pg_auto_failover --------------------------------------------------------------------------------------------
MONITOR_PORT=$((BASE_PORT + 20))
MONITOR_URL="postgres://autoctl_node@127.0.0.1:$MONITOR_PORT/pg_auto_failover?sslmode=disable"
node_port() { echo $((BASE_PORT + $1 + 10 * $2)); }
node_dir() { echo "$BASE_DIR/shard-$1-node-$2"; }
as_postgres() { if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
autoctl() {
  as_postgres env PATH="$PGBIN:$PATH" XDG_CONFIG_HOME="$BASE_DIR/autoctl/config" XDG_DATA_HOME="$BASE_DIR/autoctl/share" \
    pg_autoctl "$@"
}
ensure_autoctl() {
  command -v pg_autoctl > /dev/null && return
  [ "$(id -u)" -eq 0 ] || { say "pg_auto_failover is not installed; run: sudo apt-get install -y postgresql-$PG_VERSION-auto-failover"; exit 1; }
  say "installing postgresql-$PG_VERSION-auto-failover"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$PG_VERSION-auto-failover" >&2
}
keeper_pids() { pgrep -x -f "pg_autoctl run --pgdata $1/data" || true; }
keeper_running() { [ -n "$(keeper_pids "$1")" ]; }
run_keeper() {  # run_keeper DIR: `pg_autoctl run` of DIR/data in its own session, in the background, its log DIR.log
  local dir=$1
  keeper_running "$dir" && return
  touch "$dir.log"; if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir.log"; fi
  as_postgres env PATH="$PGBIN:$PATH" XDG_CONFIG_HOME="$BASE_DIR/autoctl/config" XDG_DATA_HOME="$BASE_DIR/autoctl/share" \
    setsid nohup pg_autoctl run --pgdata "$dir/data" >> "$dir.log" 2>&1 < /dev/null &
  local i; for i in $(seq 1 20); do keeper_running "$dir" && return; sleep 0.25; done
}
psql_at() { "$PGBIN/psql" "$1" -v ON_ERROR_STOP=1 -qAt -c "$2"; }
shard_hosts() { local k=$1 hosts="" n; for n in $(seq 0 "$STANDBYS"); do hosts="$hosts,127.0.0.1:$(node_port "$k" "$n")"; done; echo "${hosts#,}"; }
shard_url() { echo "postgresql://$1@$(shard_hosts "$2")/$DB"; }
primary_url() { echo "postgresql://postgres@$(shard_hosts "$1")/$DB?target_session_attrs=read-write&connect_timeout=3"; }
formation_state() { autoctl show state --pgdata "$BASE_DIR/monitor/data" --formation "shard_$1" 2>/dev/null; }
wait_formation() {  # wait_formation K SECONDS: until every node of shard K is primary or secondary
  local k=$1 t=${2:-120} i
  for i in $(seq 1 "$t"); do
    local states; states=$(formation_state "$k" | awk -F'|' 'NR > 2 {gsub(/ /, "", $6); gsub(/ /, "", $7); print $6 "/" $7}')
    if [ "$(echo "$states" | grep -cE '^(primary/primary|secondary/secondary)$')" = $((STANDBYS + 1)) ]; then return 0; fi
    sleep 1
  done
  say "shard $k not ready after ${t}s:"; formation_state "$k" >&2; return 1
}
wait_primary() {
  local k=$1 t=${2:-120} i
  for i in $(seq 1 "$t"); do
    if [ "$(psql_at "$(primary_url "$k")" "SELECT NOT pg_is_in_recovery()" 2>/dev/null)" = t ]; then return 0; fi
    sleep 0.5
  done
  say "shard $k has no primary taking writes after ${t}s"; return 1
}

start_monitor() {
  local dir=$BASE_DIR/monitor
  mkdir -p "$dir"; if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    say "monitor on 127.0.0.1:$MONITOR_PORT"
    autoctl create monitor --pgdata "$dir/data" --pgport "$MONITOR_PORT" --hostname 127.0.0.1 --listen 127.0.0.1 \
      --auth trust --no-ssl >> "$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
  fi
  run_keeper "$dir"
  local i; for i in $(seq 1 60); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$MONITOR_PORT" && break; sleep 0.5; done
  # how soon a silent primary is failed over (pg_auto_failover's defaults: checks every 5 s, unhealthy after 20 s)
  local period=$(( FAILOVER_MS / 4 < 5000 ? FAILOVER_MS / 4 : 5000 ))
  psql_at "postgresql://postgres@127.0.0.1:$MONITOR_PORT/pg_auto_failover" \
    "ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = $FAILOVER_MS" > /dev/null
  psql_at "postgresql://postgres@127.0.0.1:$MONITOR_PORT/pg_auto_failover" \
    "ALTER SYSTEM SET pgautofailover.health_check_period = $period" > /dev/null
  # and how long the monitor then waits for the old primary to step down before it promotes the standby (a dead
  # primary never answers; pg_auto_failover's default is 30 s)
  psql_at "postgresql://postgres@127.0.0.1:$MONITOR_PORT/pg_auto_failover" \
    "ALTER SYSTEM SET pgautofailover.primary_demote_timeout = $FAILOVER_MS" > /dev/null
  psql_at "postgresql://postgres@127.0.0.1:$MONITOR_PORT/pg_auto_failover" "SELECT pg_reload_conf()" > /dev/null
}

start_node() {  # start_node K N: create (the first time) and run node N of shard K
  local k=$1 n=$2 dir; dir=$(node_dir "$1" "$2")
  mkdir -p "$dir"; if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; fi
  if [ ! -f "$dir/data/PG_VERSION" ] && [ ! -s "$dir/created" ]; then
    say "shard $k node $n on 127.0.0.1:$(node_port "$k" "$n")"
    # a standby's data is a pg_basebackup of its primary (pg_autoctl runs it, with a replication slot)
    autoctl create postgres --pgdata "$dir/data" --pgport "$(node_port "$k" "$n")" --hostname 127.0.0.1 \
      --listen 127.0.0.1 --name "shard_${k}_node_$n" --formation "shard_$k" --dbname "$DB" --monitor "$MONITOR_URL" \
      --auth trust --no-ssl >> "$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; exit 1; }
    echo created > "$dir/created"
  fi
  run_keeper "$dir"
}

roles_on_primary() {  # the project's roles on shard K (a standby gets them by replication)
  local url; url=$(primary_url "$1")
  [ "$(psql_at "$url" "SELECT 1 FROM pg_roles WHERE rolname = '$OWNER'")" = 1 ] || psql_at "$url" "CREATE ROLE $OWNER LOGIN CREATEDB"
  psql_at "$url" "ALTER DATABASE $DB OWNER TO $OWNER"
  [ "$(psql_at "$url" "SELECT 1 FROM pg_roles WHERE rolname = '$READER'")" = 1 ] || \
    psql_at "$url" "CREATE ROLE $READER LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
  psql_at "$url" "ALTER DEFAULT PRIVILEGES FOR ROLE $OWNER IN SCHEMA public GRANT SELECT ON TABLES TO $READER"
  [ "$(psql_at "$url" "SELECT 1 FROM pg_roles WHERE rolname = '$CDC_USER'")" = 1 ] || psql_at "$url" "CREATE ROLE $CDC_USER LOGIN REPLICATION"
}

shard_urls() {  # shard_urls ROLE
  local k
  for k in $(seq 1 "$SHARDS"); do
    if [ "$STANDBYS" = 0 ]; then
      server "shard-$k" $((BASE_PORT + k)) "$([ "$1" = "$READER" ] && echo read-url || echo url)"
    else
      shard_url "$1" "$k"
    fi
  done
}

need_standbys() { [ "$STANDBYS" != 0 ] || { say "$1: only with APPAREL_STORE_STANDBYS=1"; exit 2; }; }

case "${1:-start}" in
  start)
    mkdir -p "$BASE_DIR"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$BASE_DIR"; fi
    say "coordinator on 127.0.0.1:$BASE_PORT"
    server coordinator "$BASE_PORT" start > /dev/null
    if [ "$STANDBYS" = 0 ]; then
      for k in $(seq 1 "$SHARDS"); do
        say "shard-$k on 127.0.0.1:$((BASE_PORT + k))"
        server "shard-$k" $((BASE_PORT + k)) start > /dev/null
      done
    else
      ensure_autoctl
      start_monitor
      for k in $(seq 1 "$SHARDS"); do
        if [ "$(psql_at "postgresql://postgres@127.0.0.1:$MONITOR_PORT/pg_auto_failover" \
              "SELECT 1 FROM pgautofailover.formation WHERE formationid = 'shard_$k'")" != 1 ]; then
          autoctl create formation --pgdata "$BASE_DIR/monitor/data" --formation "shard_$k" --kind pgsql --dbname "$DB" \
            >> "$BASE_DIR/monitor.log" 2>&1
        fi
        start_node "$k" 0
        wait_primary "$k" 120
        for n in $(seq 1 "$STANDBYS"); do start_node "$k" "$n"; done
      done
      for k in $(seq 1 "$SHARDS"); do wait_formation "$k" 180; roles_on_primary "$k"; done
    fi
    admin=$(coordinator_url | sed 's#://[^@]*@#://postgres@#')
    # shellcheck disable=SC2046
    (cd "$ROOT" && .venv/bin/python -m apparel.shards prepare "$admin" $(shard_urls "$OWNER"))
    coordinator_url
    ;;
  stop)
    rc=0
    if [ -d "$BASE_DIR/monitor" ]; then
      for dir in "$BASE_DIR"/shard-*-node-* "$BASE_DIR/monitor"; do
        [ -d "$dir/data" ] || continue
        if keeper_running "$dir"; then autoctl stop --pgdata "$dir/data" > /dev/null 2>&1 || rc=$?; fi
        for _ in $(seq 1 60); do keeper_running "$dir" || break; sleep 0.5; done
      done
    fi
    server coordinator "$BASE_PORT" stop || rc=$?
    for k in $(seq 1 "$SHARDS"); do
      [ -d "$BASE_DIR/shard-$k" ] && { server "shard-$k" $((BASE_PORT + k)) stop || rc=$?; }
    done
    exit $rc
    ;;
  status)
    rc=0
    server coordinator "$BASE_PORT" status || rc=$?
    if [ "$STANDBYS" = 0 ]; then
      for k in $(seq 1 "$SHARDS"); do server "shard-$k" $((BASE_PORT + k)) status || rc=$?; done
    else
      for k in $(seq 1 "$SHARDS"); do
        if psql_at "$(primary_url "$k")" "SELECT 1" > /dev/null 2>&1; then say "shard $k: a primary takes writes"
        else say "shard $k: no primary"; rc=3; fi
      done
    fi
    exit $rc
    ;;
  state)
    need_standbys state
    for k in $(seq 1 "$SHARDS"); do formation_state "$k"; done
    ;;
  stop-node)
    need_standbys stop-node
    dir=$(node_dir "$2" "$3")
    if [ "${4:-}" = --immediate ]; then
      # the machine dies: the keeper (with its services) and PostgreSQL go at once, nothing is flushed or handed
      # over; PostgreSQL's backends end when they see their postmaster gone
      postmaster=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
      for keeper in $(keeper_pids "$dir"); do
        pkill -9 -P "$keeper" 2>/dev/null || true
        kill -9 "$keeper" 2>/dev/null || true
      done
      if [ -n "$postmaster" ]; then kill -9 "$postmaster" 2>/dev/null || true; fi
    else
      autoctl stop --pgdata "$dir/data" > /dev/null
      for _ in $(seq 1 60); do keeper_running "$dir" || break; sleep 0.5; done
    fi
    say "shard $2 node $3 stopped"
    ;;
  start-node)
    need_standbys start-node
    run_keeper "$(node_dir "$2" "$3")"
    say "shard $2 node $3 started"
    ;;
  wait-primary)
    need_standbys wait-primary
    wait_primary "$2" "${3:-120}"
    ;;
  url)
    coordinator_url
    ;;
  read-url)
    server coordinator "$BASE_PORT" read-url
    ;;
  shard-urls)
    shard_urls "$OWNER"
    ;;
  read-urls)
    shard_urls "$READER"
    ;;
  *)
    echo "usage: $0 {start|stop|status|url|read-url|shard-urls|read-urls|state|stop-node|start-node|wait-primary}" >&2; exit 2
    ;;
esac
