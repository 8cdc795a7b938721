#!/usr/bin/env bash
# The project's services together, natively (what `make services-up` / `make services-down` run, and what the
# tests and CI use): scripts/objectstore.sh (SeaweedFS), scripts/trino.sh, then scripts/superset.sh when its
# secrets are set (SUPERSET_SECRET_KEY, SUPERSET_ADMIN_PASSWORD; `make superset` starts it alone and says what is
# missing). With APPAREL_CDC=1 (or the `cdc` part alone), also the change data capture path: the PostgreSQL
# store (scripts/postgres.sh: logical WAL, the capture role), Kafka (scripts/kafka.sh), Kafka Connect with
# Debezium (scripts/connect.sh), the store readied (`apparel cdc prepare`) and the connector registered. With
# APPAREL_SPARK_CLUSTER=1 (or the `spark` part alone), also a Spark standalone cluster (scripts/spark-cluster.sh).
# With APPAREL_STORE_SHARDS=2 or more (or the `store` part alone), also the sharded store: a coordinator and the
# shards (scripts/store-shards.sh). docs/topology.md shows how the parts fit.
#
#   scripts/services.sh up [all|lake|cdc|spark|store]    all (default): the lake services, CDC when APPAREL_CDC=1,
#                                                        the Spark cluster when APPAREL_SPARK_CLUSTER=1, the
#                                                        sharded store when APPAREL_STORE_SHARDS >= 2
#   scripts/services.sh down [all|lake|cdc|spark|store]  stops them (cdc: Connect and Kafka; all: PostgreSQL too);
#                                                        data, topics, the connector and its slot stay
#   scripts/services.sh status [all|lake|cdc|spark|store]
#   scripts/services.sh env                    the APPAREL_* settings that reach the running services, for eval
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
ROOT=$(cd "$HERE/.." && pwd)
cmd=${1:-up}
part=${2:-all}
case "$part" in all|lake|cdc|spark|store) ;; *) echo "usage: $0 {up|down|status} [all|lake|cdc|spark|store]" >&2; exit 2 ;; esac
cdc_on() { [ "$part" = cdc ] || { [ "$part" = all ] && [[ "${APPAREL_CDC:-0}" =~ ^(1|true|yes|on)$ ]]; }; }
spark_on() { [ "$part" = spark ] || { [ "$part" = all ] && [[ "${APPAREL_SPARK_CLUSTER:-0}" =~ ^(1|true|yes|on)$ ]]; }; }
store_on() { [ "$part" = store ] || { [ "$part" = all ] && [ "${APPAREL_STORE_SHARDS:-0}" -ge 2 ] 2>/dev/null; }; }
lake_on() { [ "$part" = all ] || [ "$part" = lake ]; }

# the store the capture reads: APPAREL_STORE_DB when it is PostgreSQL, else the project's local server
store_url() {
  case "${APPAREL_STORE_DB:-}" in
    postgresql://*|postgres://*) echo "$APPAREL_STORE_DB" ;;
    *) bash "$HERE/postgres.sh" url ;;
  esac
}

case "$cmd" in
  up)
    if cdc_on && store_on; then  # the same refusal as `apparel cdc` and `apparel stream` (apparel.cdc.refuse_shards)
      echo "[services] APPAREL_CDC=1 with APPAREL_STORE_SHARDS=${APPAREL_STORE_SHARDS:-0}: change data capture does not" \
           "cover a sharded store yet (the coordinator's WAL holds none of the shards' orders; docs/topology.md)" >&2
      exit 2
    fi
    if lake_on; then
      bash "$HERE/objectstore.sh" start
      bash "$HERE/trino.sh" start
      if [ -n "${SUPERSET_SECRET_KEY:-}" ] && [ -n "${SUPERSET_ADMIN_PASSWORD:-}" ]; then
        bash "$HERE/superset.sh" start
      else
        echo "[superset] not started: SUPERSET_SECRET_KEY and SUPERSET_ADMIN_PASSWORD are not both set (.env.example)" >&2
      fi
    fi
    if cdc_on; then
      case "${APPAREL_STORE_DB:-}" in postgresql://*|postgres://*) ;; *) bash "$HERE/postgres.sh" start > /dev/null ;; esac
      bash "$HERE/kafka.sh" start
      bash "$HERE/connect.sh" start
      APPAREL_STORE_DB=$(store_url) "$ROOT/.venv/bin/apparel" cdc prepare
      APPAREL_STORE_DB=$(store_url) "$ROOT/.venv/bin/apparel" cdc register
    fi
    if spark_on; then bash "$HERE/spark-cluster.sh" start; fi
    if store_on; then bash "$HERE/store-shards.sh" start > /dev/null; fi
    ;;
  down)
    rc=0
    if spark_on; then bash "$HERE/spark-cluster.sh" stop || rc=$?; fi
    if store_on; then bash "$HERE/store-shards.sh" stop || rc=$?; fi
    # only with APPAREL_CDC=1 (or `down cdc`): the lake's users (`make services-down` in a test) leave a running
    # capture alone
    if cdc_on; then
      # the capture stops first, so the broker's last records are flushed; nothing is dropped
      bash "$HERE/connect.sh" stop || rc=$?
      bash "$HERE/kafka.sh" stop || rc=$?
      # the store itself only with everything (`make services-down`); `down cdc` leaves it serving
      if [ "$part" = all ] && cdc_on; then bash "$HERE/postgres.sh" stop || rc=$?; fi
    fi
    if lake_on; then
      bash "$HERE/superset.sh" stop || rc=$?
      bash "$HERE/trino.sh" stop || rc=$?
      bash "$HERE/objectstore.sh" stop || rc=$?
    fi
    exit $rc
    ;;
  status)
    rc=0
    if lake_on; then
      bash "$HERE/objectstore.sh" status || rc=$?
      bash "$HERE/trino.sh" status || rc=$?
      bash "$HERE/superset.sh" status || true  # optional: started only when its secrets are set
    fi
    if cdc_on; then
      bash "$HERE/postgres.sh" status || rc=$?
      bash "$HERE/kafka.sh" status || rc=$?
      bash "$HERE/connect.sh" status || rc=$?
    fi
    if spark_on; then bash "$HERE/spark-cluster.sh" status || rc=$?; fi
    if store_on; then bash "$HERE/store-shards.sh" status || rc=$?; fi
    exit $rc
    ;;
  env)
    # `eval "$(bash scripts/services.sh env)"`: the settings the services were started with, exported
    (cd "$ROOT" && .venv/bin/python -m apparel.services) | sed 's/^/export /'
    if bash "$HERE/postgres.sh" status > /dev/null 2>&1; then
      echo "export APPAREL_STORE_DB=$(printf %q "$(store_url)")"
      case "${APPAREL_STORE_DB:-}" in
        postgresql://*|postgres://*) ;;  # a server of one's own: its read-only role is one's own to set
        *) echo "export APPAREL_STORE_READ_DB=$(printf %q "$(bash "$HERE/postgres.sh" read-url)")" ;;
      esac
    fi
    if bash "$HERE/connect.sh" status > /dev/null 2>&1; then echo "export APPAREL_CDC=1"; fi
    if bash "$HERE/spark-cluster.sh" status > /dev/null 2>&1; then
      echo "export APPAREL_SPARK_MASTER=$(printf %q "$(cd "$ROOT" && .venv/bin/python -m apparel.services | sed -n 's/^APPAREL_SPARK_CLUSTER_URL=//p')")"
    fi
    if bash "$HERE/store-shards.sh" status > /dev/null 2>&1; then
      # seed and simulate write to the coordinator; bronze reads the masters there and the orders on the shards
      echo "export APPAREL_STORE_DB=$(printf %q "$(bash "$HERE/store-shards.sh" url)")"
      echo "export APPAREL_STORE_READ_DB=$(printf %q "$(bash "$HERE/store-shards.sh" read-url)")"
      echo "export APPAREL_STORE_SHARD_URLS=$(printf %q "$(bash "$HERE/store-shards.sh" read-urls | tr '\n' ' ' | sed 's/ $//')")"
    fi
    ;;
  *)
    echo "usage: $0 {up|down|status|env} [all|lake|cdc|spark|store]" >&2; exit 2
    ;;
esac
