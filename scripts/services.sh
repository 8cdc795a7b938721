#!/usr/bin/env bash
# The object store, Trino and Superset together, natively (what `make services-up` / `make services-down` run,
# and what the tests and CI use): scripts/objectstore.sh (SeaweedFS), scripts/trino.sh, then
# scripts/superset.sh when its secrets are set (SUPERSET_SECRET_KEY, SUPERSET_ADMIN_PASSWORD; `make superset`
# starts it alone and says what is missing).
#
#   scripts/services.sh up | down | status
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
case "${1:-up}" in
  up)
    bash "$HERE/objectstore.sh" start
    bash "$HERE/trino.sh" start
    if [ -n "${SUPERSET_SECRET_KEY:-}" ] && [ -n "${SUPERSET_ADMIN_PASSWORD:-}" ]; then
      bash "$HERE/superset.sh" start
    else
      echo "[superset] not started: SUPERSET_SECRET_KEY and SUPERSET_ADMIN_PASSWORD are not both set (.env.example)" >&2
    fi
    ;;
  down)
    rc=0
    bash "$HERE/superset.sh" stop || rc=$?
    bash "$HERE/trino.sh" stop || rc=$?
    bash "$HERE/objectstore.sh" stop || rc=$?
    exit $rc
    ;;
  status)
    rc=0
    bash "$HERE/objectstore.sh" status || rc=$?
    bash "$HERE/trino.sh" status || rc=$?
    bash "$HERE/superset.sh" status || true  # optional: started only when its secrets are set
    exit $rc
    ;;
  *)
    echo "usage: $0 {up|down|status}" >&2; exit 2
    ;;
esac
