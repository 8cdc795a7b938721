#!/usr/bin/env bash
# The project's Superset (dashboards on the gold marts through Trino), natively, with no Docker.
#
#   scripts/superset.sh start    install if missing, migrate, import the assets, start, wait for /health
#   scripts/superset.sh import   import the assets and sync the Viewer role again (running or not)
#   scripts/superset.sh stop
#   scripts/superset.sh status
#
# Superset (pinned in requirements-superset.txt) gets its own virtualenv under
# ~/.cache/apparel/superset/<version>-<hash of the pins>/venv: it cannot share .venv (SQLAlchemy<2).
# It listens on the port of APPAREL_SUPERSET_URL (default 8088), served by gunicorn (one worker, threads).
# Settings: superset/superset_config.py. Metadata (SQLite), log and pid: .services/superset/.
# Required in the environment, with no default: SUPERSET_SECRET_KEY and SUPERSET_ADMIN_PASSWORD
# (SUPERSET_ADMIN_USER defaults to admin). SUPERSET_VIEWER_PASSWORD adds a user with the Viewer role.
# The database connection is trino://$APPAREL_TRINO_USER@<host:port of APPAREL_TRINO_URL>/lakehouse/gold.
set -euo pipefail
NAME=superset
. "$(dirname "${BASH_SOURCE[0]}")/services-lib.sh"

REQS=$ROOT/requirements-superset.txt
VERSION=$(sed -n 's/^apache-superset==\([^ ]*\).*/\1/p' "$REQS")
PINS=$(sha256sum "$REQS" | cut -c1-12)
VENV=$CACHE_ROOT/superset/$VERSION-$PINS/venv
DIR=$SERVICES_DIR/superset
PIDFILE=$DIR/superset.pid
LOG=$DIR/superset.log

install_superset() {
  [ -f "$VENV/.installed" ] && return
  local python=${APPAREL_SUPERSET_PYTHON:-python3}
  echo "[$NAME] installing Superset $VERSION into $VENV (pinned: requirements-superset.txt; a few minutes, once)" >&2
  rm -rf "$VENV"; mkdir -p "$(dirname "$VENV")"
  "$python" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" >&2
  touch "$VENV/.installed"
}

require_secrets() {
  local missing=()
  [ -n "${SUPERSET_SECRET_KEY:-}" ] || missing+=(SUPERSET_SECRET_KEY)
  [ -n "${SUPERSET_ADMIN_PASSWORD:-}" ] || missing+=(SUPERSET_ADMIN_PASSWORD)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[$NAME] set ${missing[*]} in the environment (see .env.example); there is no default" >&2; exit 1
  fi
}

superset_env() {
  export SUPERSET_CONFIG_PATH=$ROOT/superset/superset_config.py SUPERSET_HOME=$DIR FLASK_APP=superset
  export PATH=$VENV/bin:$PATH
}

trino_uri() {
  local u=${APPAREL_TRINO_URL#*://}; u=${u%%/*}
  echo "trino://${APPAREL_TRINO_USER:-apparel}@$u/lakehouse/gold"
}

# migrate (every start: a no-op when up to date), sync roles and permissions (once per version), import
migrate_and_import() {
  superset_env
  superset db upgrade >>"$LOG" 2>&1 || { echo "[$NAME] superset db upgrade failed; last lines of $LOG:" >&2; tail -25 "$LOG" >&2; exit 1; }
  if [ ! -f "$DIR/initialized-$VERSION" ]; then
    superset init >>"$LOG" 2>&1 || { echo "[$NAME] superset init failed; last lines of $LOG:" >&2; tail -25 "$LOG" >&2; exit 1; }
    touch "$DIR/initialized-$VERSION"
  fi
  local out
  out=$("$VENV/bin/python" "$ROOT/superset/bootstrap.py" --assets "$ROOT/superset/assets" --trino-uri "$(trino_uri)" 2>>"$LOG" | tail -1) \
    || { echo "[$NAME] importing the assets failed; last lines of $LOG:" >&2; tail -25 "$LOG" >&2; exit 1; }
  echo "[$NAME] assets imported: $out" >&2
}

healthy() { curl -fsS --max-time 5 "http://127.0.0.1:$PORT/health" | grep -q OK; }

load_settings
if [ -z "$APPAREL_SUPERSET_URL" ]; then echo "[$NAME] APPAREL_SUPERSET_URL is empty: Superset is switched off" >&2; exit 0; fi
require_local APPAREL_SUPERSET_URL "$APPAREL_SUPERSET_URL"
PORT=$(url_port "$APPAREL_SUPERSET_URL")
mkdir -p "$DIR"
case "${1:-start}" in
  start)
    if pid_alive "$PIDFILE"; then
      echo "[$NAME] already running on 127.0.0.1:$PORT" >&2
    else
      require_secrets
      install_superset
      port_free "$PORT" || { echo "[$NAME] port $PORT (APPAREL_SUPERSET_URL) is in use by another program" >&2; exit 1; }
      migrate_and_import
      echo "[$NAME] starting Superset $VERSION on 127.0.0.1:$PORT (log: $LOG)" >&2
      setsid nohup "$VENV/bin/gunicorn" --bind "127.0.0.1:$PORT" --workers 1 --worker-class gthread --threads 8 \
        --timeout 120 --limit-request-line 0 --limit-request-field_size 0 "superset.app:create_app()" \
        >>"$LOG" 2>&1 < /dev/null &
      echo $! > "$PIDFILE"
    fi
    wait_until 180 "healthy" "$PIDFILE" "$LOG" healthy
    echo "[$NAME] ready: $APPAREL_SUPERSET_URL (user ${SUPERSET_ADMIN_USER:-admin})" >&2
    ;;
  import)
    require_secrets
    install_superset
    migrate_and_import
    ;;
  stop)
    stop_command "$PIDFILE"
    ;;
  status)
    status_command "$PIDFILE" "$APPAREL_SUPERSET_URL"
    ;;
  *)
    echo "usage: $0 {start|import|stop|status}" >&2; exit 2
    ;;
esac
