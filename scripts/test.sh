#!/usr/bin/env bash
# Every test: unit, contract and integration (real Spark + Delta, SQLite, the project's PostgreSQL, object
# store and Trino, which the tests start with scripts/postgres.sh and scripts/services.sh), the fast ones first
# (tests/conftest.py orders them), on two pytest-xdist workers. Extra arguments go to pytest. It prints the 25
# slowest tests and keeps the JUnit XML report in artifacts/junit.xml. The exit code is pytest's: a failure, or
# no test collected at all (5), fails the run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export TZ=UTC  # the store's timestamps are naive; tests compare them as UTC
mkdir -p artifacts
# Debian's Chromium for the dashboard tests (Playwright drives it; browsers are never downloaded), installed while
# the class archive below builds (apt waits on the network and dpkg, the archive on the CPU)
chromium_install=
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "[test] installing Debian's chromium for the browser tests (log: artifacts/chromium-install.log)" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
      > artifacts/chromium-install.log 2>&1 &
    chromium_install=$!
    # an early exit (the class archive failing) still waits for apt: never leave dpkg half done
    trap 'wait "$chromium_install" 2>/dev/null || true' EXIT
  else
    echo "[test] /usr/bin/chromium is missing: run 'sudo apt-get install chromium' (the browser test needs it)" >&2
  fi
fi
# the Spark driver's class archive for the tests' class path (src/apparel/cds.py): every Spark JVM of the suite
# (the tests' sessions, the CLI's, Airflow's spark-submits) starts from it; built once (about a minute), cached
archive=$(APPAREL_ENV=ci .venv/bin/apparel cds)
echo "[test] the Spark class archive: $archive" >&2
if [ -n "$chromium_install" ] && ! wait "$chromium_install"; then
  echo "[test] installing chromium failed:" >&2
  tail -20 artifacts/chromium-install.log >&2
  exit 1
fi
trap - EXIT
# the project's own modules as bytecode, as `make` leaves the venv's (Makefile, BYTECODE): with
# PYTHONDONTWRITEBYTECODE set, each of the suite's few hundred Python processes would compile them again
.venv/bin/python -m compileall -q src dags spark_jobs bench > /dev/null
services_were_up=0
bash scripts/services.sh status >/dev/null 2>&1 && services_were_up=1
status=0
# two workers by default (APPAREL_TEST_WORKERS=0 runs in one process); tests/conftest.py groups them
workers=${APPAREL_TEST_WORKERS:-2}
xdist=()
if [ "$workers" != 0 ]; then xdist=(-n "$workers" --dist loadscope --no-loadscope-reorder); fi
.venv/bin/python -m pytest tests "${xdist[@]}" --durations=25 --junitxml=artifacts/junit.xml "$@" || status=$?
# leave no server behind
bash scripts/connect.sh stop >/dev/null 2>&1 || true
bash scripts/kafka.sh stop >/dev/null 2>&1 || true
bash scripts/postgres.sh stop >/dev/null 2>&1 || true
if [ "$services_were_up" = 0 ]; then bash scripts/services.sh down >/dev/null 2>&1 || true; fi
exit $status
