#!/usr/bin/env bash
# The object store and Trino together, natively (what `make services-up` / `make services-down` run, and what
# the tests and CI use): scripts/objectstore.sh (SeaweedFS), then scripts/trino.sh.
#
#   scripts/services.sh up | down | status
set -euo pipefail
HERE=$(dirname "${BASH_SOURCE[0]}")
case "${1:-up}" in
  up)
    bash "$HERE/objectstore.sh" start
    bash "$HERE/trino.sh" start
    ;;
  down)
    rc=0
    bash "$HERE/trino.sh" stop || rc=$?
    bash "$HERE/objectstore.sh" stop || rc=$?
    exit $rc
    ;;
  status)
    rc=0
    bash "$HERE/objectstore.sh" status || rc=$?
    bash "$HERE/trino.sh" status || rc=$?
    exit $rc
    ;;
  *)
    echo "usage: $0 {up|down|status}" >&2; exit 2
    ;;
esac
