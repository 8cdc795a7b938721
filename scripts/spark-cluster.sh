#!/usr/bin/env bash
# A Spark standalone cluster on this machine, natively, from the pyspark wheel of the project's venv (which has
# `bin/spark-class` but no start scripts): one master and APPAREL_SPARK_CLUSTER_WORKERS workers (default 2), all
# bound to 127.0.0.1.
#
#   scripts/spark-cluster.sh start    start the master, then the workers; wait until the master lists them all
#   scripts/spark-cluster.sh stop
#   scripts/spark-cluster.sh status   running, with the workers the master lists (exit 3 when stopped)
#
# The master listens at APPAREL_SPARK_CLUSTER_URL (default spark://127.0.0.1:17077) and serves its UI on
# APPAREL_SPARK_CLUSTER_UI_PORT (18090; Airflow has 8080, which is Spark's default); worker N's UI is on the UI port
# + N. Each worker offers APPAREL_SPARK_CLUSTER_WORKER_CORES cores (1) and APPAREL_SPARK_CLUSTER_WORKER_MEMORY (3g)
# to executors. Work dirs (the executors' files), logs and pid files: .services/spark/. Jobs run there with
# APPAREL_SPARK_MASTER set to the master's URL (`bash scripts/services.sh env` prints it when the cluster runs).
set -euo pipefail
NAME=spark-cluster
. "$(dirname "${BASH_SOURCE[0]}")/services-lib.sh"
load_settings

DIR=$SERVICES_DIR/spark
LOGS=$DIR/logs
URL=$APPAREL_SPARK_CLUSTER_URL
HOSTPORT=${URL#spark://}
HOST=${HOSTPORT%:*}
PORT=${HOSTPORT##*:}
UI_PORT=$APPAREL_SPARK_CLUSTER_UI_PORT
WORKERS=$APPAREL_SPARK_CLUSTER_WORKERS
SPARK_HOME=$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
export SPARK_HOME
# the daemons themselves are small: the executors they start get the memory
export SPARK_DAEMON_MEMORY=${APPAREL_SPARK_CLUSTER_DAEMON_MEMORY:-256m}
# executors run the venv's Python, whatever python3 the PATH holds
export PYSPARK_PYTHON=$PY

case "$HOST" in
  127.0.0.1|localhost) ;;
  *) echo "[$NAME] APPAREL_SPARK_CLUSTER_URL=$URL is not on this machine: the native cluster serves 127.0.0.1 only" >&2; exit 1 ;;
esac

# the master's view: its status and the number of ALIVE workers (its UI's JSON)
alive_workers() {
  "$PY" -c 'import json, sys, urllib.request
state = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=3))
print(sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE") if state.get("status") == "ALIVE" else -1)' "$UI_PORT"
}
all_alive() { [ "$(alive_workers)" = "$WORKERS" ]; }
master_up() { [ "$(alive_workers)" -ge 0 ]; }

start_daemon() {  # start_daemon NAME CLASS ARGS...: a spark-class JVM in the background, with its pid file
  local name=$1; shift
  nohup "$SPARK_HOME/bin/spark-class" "$@" > "$LOGS/$name.log" 2>&1 &
  echo $! > "$DIR/$name.pid"
}

case "${1:-start}" in
  start)
    mkdir -p "$LOGS"
    if pid_alive "$DIR/master.pid"; then
      echo "[$NAME] master already running at $URL" >&2
    else
      for p in "$PORT" "$UI_PORT"; do
        port_free "$p" || { echo "[$NAME] port $p is in use by another program (APPAREL_SPARK_CLUSTER_URL=$URL, APPAREL_SPARK_CLUSTER_UI_PORT=$UI_PORT)" >&2; exit 1; }
      done
      echo "[$NAME] starting the master at $URL (UI http://127.0.0.1:$UI_PORT, logs: $LOGS)" >&2
      start_daemon master org.apache.spark.deploy.master.Master --host "$HOST" --port "$PORT" --webui-port "$UI_PORT"
    fi
    wait_until 120 "up" "$DIR/master.pid" "$LOGS/master.log" master_up
    for n in $(seq 1 "$WORKERS"); do
      if pid_alive "$DIR/worker-$n.pid"; then continue; fi
      port_free $((UI_PORT + n)) || { echo "[$NAME] port $((UI_PORT + n)) (worker $n's UI) is in use by another program" >&2; exit 1; }
      mkdir -p "$DIR/work-$n"
      echo "[$NAME] starting worker $n: $APPAREL_SPARK_CLUSTER_WORKER_CORES core(s), $APPAREL_SPARK_CLUSTER_WORKER_MEMORY (UI http://127.0.0.1:$((UI_PORT + n)))" >&2
      start_daemon "worker-$n" org.apache.spark.deploy.worker.Worker "$URL" --host "$HOST" \
        --cores "$APPAREL_SPARK_CLUSTER_WORKER_CORES" --memory "$APPAREL_SPARK_CLUSTER_WORKER_MEMORY" \
        --webui-port $((UI_PORT + n)) --work-dir "$DIR/work-$n"
    done
    wait_until 120 "listing $WORKERS worker(s)" "$DIR/master.pid" "$LOGS/master.log $LOGS/worker-1.log" all_alive
    echo "[$NAME] ready: $URL with $WORKERS worker(s)" >&2
    ;;
  stop)
    rc=0
    for n in $(seq 1 "$WORKERS"); do
      NAME=spark-worker-$n stop_command "$DIR/worker-$n.pid" || rc=$?
    done
    NAME=spark-master stop_command "$DIR/master.pid" || rc=$?
    exit $rc
    ;;
  status)
    if ! pid_alive "$DIR/master.pid"; then echo "[$NAME] stopped" >&2; exit 3; fi
    echo "[$NAME] running: $URL, $(alive_workers 2>/dev/null || echo '?') of $WORKERS worker(s) alive" >&2
    ;;
  *)
    echo "usage: $0 {start|stop|status}" >&2; exit 2
    ;;
esac
