#!/usr/bin/env bash
# Airflow 3.3 standalone (api-server, scheduler, dag-processor, triggerer in one process tree) with the
# project's DAGs, on the project's .venv, with no Docker.
#
#   scripts/airflow.sh start    start in the background; waits for the health endpoint, prints URL and login
#   scripts/airflow.sh stop     stop it (the metadata database stays)
#   scripts/airflow.sh status   the health endpoint's answer
#   scripts/airflow.sh env      print the environment the Airflow commands use (eval it to run `airflow ...`)
#   scripts/airflow.sh run      start in the foreground (Ctrl-C stops it)
#
# AIRFLOW_HOME is $APPAREL_AIRFLOW_HOME (default .services/airflow, git-ignored): SQLite metadata database,
# logs and the generated admin password. LocalExecutor, sized for 2 cores. The UI and API listen on
# 127.0.0.1:$APPAREL_AIRFLOW_PORT (default 8080). Login: user `admin`, password generated at the first start
# into $AIRFLOW_HOME/simple_auth_manager_passwords.json.generated (mode 600; never printed nor logged).
# The Spark connection is AIRFLOW_CONN_SPARK_APPAREL (default: local mode, master local[*]).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export AIRFLOW_HOME=${APPAREL_AIRFLOW_HOME:-$ROOT/.services/airflow}
PORT=${APPAREL_AIRFLOW_PORT:-8080}
LOG=$AIRFLOW_HOME/standalone.log
PIDFILE=$AIRFLOW_HOME/standalone.pid
BIN=$ROOT/.venv/bin

say() { echo "[airflow] $*" >&2; }

airflow_env() {
  export PATH="$BIN:$PATH"
  export AIRFLOW__CORE__DAGS_FOLDER=$ROOT/dags
  export AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__EXECUTOR=LocalExecutor
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-sqlite:///$AIRFLOW_HOME/airflow.db}
  export AIRFLOW__CORE__PARALLELISM=${AIRFLOW__CORE__PARALLELISM:-2}
  export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=${AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG:-2}
  export AIRFLOW__API__HOST=${AIRFLOW__API__HOST:-127.0.0.1}
  export AIRFLOW__API__PORT=$PORT
  export AIRFLOW__API__BASE_URL=http://127.0.0.1:$PORT
  export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$PORT/execution/
  export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS:-admin:admin}
  export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=True
  export AIRFLOW_CONN_SPARK_APPAREL=${AIRFLOW_CONN_SPARK_APPAREL:-'{"conn_type": "spark", "host": "local[*]"}'}
}

health() { curl -fsS --max-time 5 "http://127.0.0.1:$PORT/api/v2/monitor/health"; }

running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

require_venv() {
  if [ ! -x "$BIN/airflow" ]; then
    say "Airflow is not installed in .venv: run 'make airflow-setup' (or 'make airflow')"
    exit 1
  fi
}

cmd=${1:-start}
mkdir -p "$AIRFLOW_HOME"
airflow_env
case "$cmd" in
  start)
    require_venv
    if running; then
      say "already running (pid $(cat "$PIDFILE")) on http://127.0.0.1:$PORT"
    else
      # the users' passwords, generated here (mode 600) rather than by Airflow, which prints the ones it
      # generates into its log (README "Least privilege": no password in a log)
      (umask 077; python3 - "$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated" \
        "$AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS" <<'EOF'
import json, os, secrets, sys
path, users = sys.argv[1], [u.split(":")[0].strip() for u in sys.argv[2].split(",") if u.strip()]
have = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
missing = [u for u in users if u not in have]
if missing:
    have.update({u: secrets.token_urlsafe(12) for u in missing})
    with open(path, "w") as f:
        f.write(json.dumps(have) + "\n")
EOF
      )
      say "starting standalone on http://127.0.0.1:$PORT (AIRFLOW_HOME $AIRFLOW_HOME, log $LOG)"
      setsid "$BIN/airflow" standalone > "$LOG" 2>&1 < /dev/null &
      echo $! > "$PIDFILE"
    fi
    for i in $(seq 1 ${APPAREL_AIRFLOW_START_TIMEOUT:-240}); do
      if out=$(health 2>/dev/null) && python3 - "$out" <<'EOF'
import json, sys
h = json.loads(sys.argv[1])
sys.exit(0 if all(h.get(k, {}).get("status") == "healthy" for k in ("metadatabase", "scheduler")) else 1)
EOF
      then
        say "healthy after ${i}s: $out"
        pw=$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated
        say "UI: http://127.0.0.1:$PORT  login: admin / the password in $pw"
        exit 0
      fi
      if ! running; then
        say "standalone exited during start; last lines of $LOG:"; tail -n 30 "$LOG" >&2; exit 1
      fi
      sleep 1
    done
    say "not healthy after ${APPAREL_AIRFLOW_START_TIMEOUT:-240}s; last lines of $LOG:"; tail -n 30 "$LOG" >&2
    exit 1
    ;;
  stop)
    if running; then
      pid=$(cat "$PIDFILE")
      say "stopping (pid $pid)"
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 30); do running || break; sleep 1; done
      if running; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
    else
      say "not running"
    fi
    rm -f "$PIDFILE"
    ;;
  status)
    if running && health; then echo; else say "not running on port $PORT"; exit 1; fi
    ;;
  env)
    env | grep -E '^(AIRFLOW|PATH=)' | sed -e "s/'/'\\\\''/g" -e "s/=\(.*\)/='\1'/" -e 's/^/export /'
    ;;
  run)
    require_venv
    exec "$BIN/airflow" standalone
    ;;
  *)
    echo "usage: $0 start|stop|status|env|run" >&2; exit 2
    ;;
esac
