#!/usr/bin/env bash
# The sharded store database, natively: a coordinator PostgreSQL and APPAREL_STORE_SHARDS shard servers (default 2),
# each one the project's own server (scripts/postgres.sh: the same roles, trust on 127.0.0.1), then the layout
# (`python -m apparel.shards prepare`: orders and order_details hash partitioned by order_id over the shards through
# postgres_fdw; the reference tables on the coordinator). docs/topology.md describes it.
#
#   scripts/store-shards.sh start    start the servers, lay the tables out; prints the coordinator's store URL
#   scripts/store-shards.sh stop     stops them (data stays)
#   scripts/store-shards.sh status
#   scripts/store-shards.sh url      the coordinator's URL (APPAREL_STORE_DB: seed and simulate write there)
#   scripts/store-shards.sh read-url the coordinator's URL for the read-only role (APPAREL_STORE_READ_DB: the
#                                    master tables bronze reads there)
#   scripts/store-shards.sh shard-urls   one URL per shard, the owner's
#   scripts/store-shards.sh read-urls    one URL per shard, the read-only role's (APPAREL_STORE_SHARD_URLS: what
#                                        bronze reads orders and order_details from)
#
# Ports: the coordinator on APPAREL_STORE_SHARDS_PORT (default 55500), shard k on that port + k. Data: beside the
# project's single server's folder (`scripts/postgres.sh dir`), with -shards appended.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARDS=${APPAREL_STORE_SHARDS:-2}
BASE_PORT=${APPAREL_STORE_SHARDS_PORT:-55500}
BASE_DIR=${APPAREL_STORE_SHARDS_DIR:-$(APPAREL_PG_DIR= bash "$HERE/postgres.sh" dir)-shards}

say() { echo "[store-shards] $*" >&2; }
[[ "$SHARDS" =~ ^[0-9]+$ ]] && [ "$SHARDS" -ge 2 ] || { say "APPAREL_STORE_SHARDS=$SHARDS: a sharded store has 2 shards or more"; exit 2; }

# server NAME PORT COMMAND: scripts/postgres.sh COMMAND for one of the servers
server() { APPAREL_PG_DIR=$BASE_DIR/$1 APPAREL_PG_PORT=$2 bash "$HERE/postgres.sh" "$3"; }
names() { echo "coordinator:$BASE_PORT"; for k in $(seq 1 "$SHARDS"); do echo "shard-$k:$((BASE_PORT + k))"; done; }
shard_urls() { for k in $(seq 1 "$SHARDS"); do server "shard-$k" $((BASE_PORT + k)) "${1:-url}"; done; }
coordinator_url() { server coordinator "$BASE_PORT" url; }

case "${1:-start}" in
  start)
    mkdir -p "$BASE_DIR"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$BASE_DIR"; fi
    for entry in $(names); do
      say "${entry%%:*} on 127.0.0.1:${entry##*:}"
      server "${entry%%:*}" "${entry##*:}" start > /dev/null
    done
    admin=$(coordinator_url | sed 's#://[^@]*@#://postgres@#')
    # shellcheck disable=SC2046
    (cd "$ROOT" && .venv/bin/python -m apparel.shards prepare "$admin" $(shard_urls))
    coordinator_url
    ;;
  stop)
    rc=0
    for entry in $(names); do server "${entry%%:*}" "${entry##*:}" stop || rc=$?; done
    exit $rc
    ;;
  status)
    rc=0
    for entry in $(names); do server "${entry%%:*}" "${entry##*:}" status || rc=$?; done
    exit $rc
    ;;
  url)
    coordinator_url
    ;;
  read-url)
    server coordinator "$BASE_PORT" read-url
    ;;
  shard-urls)
    shard_urls
    ;;
  read-urls)
    shard_urls read-url
    ;;
  *)
    echo "usage: $0 {start|stop|status|url|read-url|shard-urls|read-urls}" >&2; exit 2
    ;;
esac
