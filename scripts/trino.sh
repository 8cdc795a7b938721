#!/usr/bin/env bash
# The project's Trino (SQL over the lakehouse), natively, with no Docker: one node, coordinator and worker; with
# APPAREL_TRINO_WORKERS=N (N >= 1), a coordinator that schedules no work on itself and N workers from the same
# install (worker k on the coordinator's port + k, its own data and logs under .services/trino/worker-k), all
# listed in system.runtime.nodes (docs/topology.md).
#
#   scripts/trino.sh start    install if missing, configure, start, wait until /v1/info says it has started
#   scripts/trino.sh stop
#   scripts/trino.sh status
#
# trino-server 476 comes from Maven Central (checked against the SHA-256 below) and is unpacked into
# ~/.cache/apparel/trino/<version>/ with only the launcher, the core and the Delta Lake plugin (the tarball's
# other ~50 plugins would only slow the start). Trino 476 needs Java 24+: $APPAREL_TRINO_JAVA_HOME, else the
# newest JDK 24+ under /usr/lib/jvm. It listens on the port of APPAREL_TRINO_URL (default 8090). Settings:
# conf/trino/ (copied into .services/trino/etc at each start, node.properties generated); data and logs:
# .services/trino/. The catalog reads the object store's settings and keys from the environment.
set -euo pipefail
NAME=trino
. "$(dirname "${BASH_SOURCE[0]}")/services-lib.sh"

VERSION=476
SHA256=cfd5accde17e8ebd251eeeb78aed1f490e77bb3a164d95a0f454bf8a7c1cbd3f
URL=https://repo1.maven.org/maven2/io/trino/trino-server/$VERSION/trino-server-$VERSION.tar.gz
INSTALL=$CACHE_ROOT/trino/$VERSION
HOME_T=$INSTALL/trino-server-$VERSION
DIR=$SERVICES_DIR/trino
LOGS=$DIR/logs

install_trino() {
  [ -x "$HOME_T/bin/launcher" ] && return
  mkdir -p "$INSTALL"
  local tarball=$INSTALL/trino-server-$VERSION.tar.gz
  if ! echo "$SHA256  $tarball" | sha256sum -c --status 2>/dev/null; then
    echo "[$NAME] downloading trino-server $VERSION from Maven Central (821 MB, once)" >&2
    curl -fsSL --retry 3 -C - -o "$tarball.part" "$URL" || { rm -f "$tarball.part"; curl -fsSL --retry 3 -o "$tarball.part" "$URL"; }
    echo "$SHA256  $tarball.part" | sha256sum -c --status || { echo "[$NAME] checksum mismatch: $tarball.part" >&2; rm -f "$tarball.part"; exit 1; }
    mv "$tarball.part" "$tarball"
  fi
  echo "[$NAME] unpacking the launcher, core and Delta Lake plugin into $HOME_T" >&2
  rm -rf "$INSTALL/.unpack"; mkdir -p "$INSTALL/.unpack"
  # all of it (plugins share jars through hard links), then drop every plugin but Delta Lake
  tar -xzf "$tarball" -C "$INSTALL/.unpack"
  find "$INSTALL/.unpack/trino-server-$VERSION/plugin" -mindepth 1 -maxdepth 1 ! -name delta-lake -exec rm -rf {} +
  rm -rf "$HOME_T"; mv "$INSTALL/.unpack/trino-server-$VERSION" "$HOME_T"; rmdir "$INSTALL/.unpack"
  rm -f "$tarball"  # the unpacked subset is what runs; the tarball would be 821 MB more on disk
}

java_major() { "$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }

find_java() {
  if [ -n "${APPAREL_TRINO_JAVA_HOME:-}" ]; then
    local v; v=$(java_major "$APPAREL_TRINO_JAVA_HOME" || true)
    if [ -z "$v" ] || [ "$v" -lt 24 ]; then
      echo "[$NAME] APPAREL_TRINO_JAVA_HOME=$APPAREL_TRINO_JAVA_HOME is not a JDK 24+ (Trino $VERSION needs one)" >&2; exit 1
    fi
    echo "$APPAREL_TRINO_JAVA_HOME"; return
  fi
  local best="" best_v=0 d v
  for d in /usr/lib/jvm/*/; do
    d=${d%/}
    [ -x "$d/bin/java" ] || continue
    v=$(java_major "$d" || true)
    if [ -n "$v" ] && [ "$v" -ge 24 ] && [ "$v" -gt "$best_v" ]; then best=$d; best_v=$v; fi
  done
  if [ -z "$best" ]; then
    echo "[$NAME] Trino $VERSION needs Java 24 or newer and none is under /usr/lib/jvm: install one" \
         "(e.g. temurin-25-jdk) or set APPAREL_TRINO_JAVA_HOME" >&2
    exit 1
  fi
  echo "$best"
}

launcher() {  # launcher [--node DIR] COMMAND: the launcher of the coordinator (DIR: $DIR) or of a worker
  local node=$DIR
  if [ "$1" = --node ]; then node=$2; shift 2; fi
  JAVA_HOME=$JAVA PATH=$JAVA/bin:$PATH "$HOME_T/bin/launcher" --etc-dir "$node/etc" --data-dir "$node/data" \
    --pid-file "$node/trino.pid" --launcher-log-file "$node/logs/launcher.log" \
    --server-log-file "$node/logs/server.log" "$@"
}

# node_jvm DIR: the pid of the JVM of the node whose folder is DIR, found by its command line (the launcher passes
# -Dconfig=DIR/etc/config.properties); nothing when none runs
node_jvm() {
  local f pid
  # one grep over every process's NUL-separated arguments (-z), each compared whole (-x) and literally (-F)
  for f in $(grep -lzxF -- "-Dconfig=$1/etc/config.properties" /proc/[0-9]*/cmdline 2>/dev/null); do
    pid=${f#/proc/}; pid=${pid%/cmdline}
    running_pid "$pid" && { echo "$pid"; return 0; }
  done
  return 1
}
# adopt DIR: make DIR/trino.pid name the node's JVM. The launcher writes the pid of the process it forks, which
# is the JVM once it execs; once in a while (seen in CI) the file kept a pid that was not the JVM's, so that
# start took the node for stopped (then found its port taken) and stop left it running.
adopt() {
  local pid
  pid=$(node_jvm "$1") || return 0
  if [ "$(cat "$1/trino.pid" 2>/dev/null)" != "$pid" ]; then
    [ -s "$1/trino.pid" ] && echo "[$NAME] ${1##*/}: the pid file said $(cat "$1/trino.pid"), the JVM is $pid" >&2
    echo "$pid" > "$1/trino.pid"
  fi
}
# node_running DIR: whether the node whose folder is DIR runs, its pid file made true first (adopt)
node_running() { adopt "$1"; pid_alive "$1/trino.pid"; }

started() { curl -fsS --max-time 5 "http://127.0.0.1:$PORT/v1/info" | grep -q '"starting":false'; }
# the coordinator lists every worker that announced itself (GET /v1/node: the nodes other than itself; like
# every /v1 resource but /v1/info, it answers 401 to a request that names no user)
workers_listed() {
  [ "$(curl -fsS --max-time 5 -H 'X-Trino-User: apparel' "http://127.0.0.1:$PORT/v1/node" 2>/dev/null | "$PY" -c 'import json, sys
print(len(json.load(sys.stdin)))' 2>/dev/null)" = "$WORKERS" ]
}

load_settings
if [ -z "$APPAREL_TRINO_URL" ]; then echo "[$NAME] APPAREL_TRINO_URL=off: Trino is switched off" >&2; exit 0; fi
require_local APPAREL_TRINO_URL "$APPAREL_TRINO_URL"
PORT=$(url_port "$APPAREL_TRINO_URL")
WORKERS=${APPAREL_TRINO_WORKERS:-0}
[[ "$WORKERS" =~ ^[0-9]$ ]] || { echo "[$NAME] APPAREL_TRINO_WORKERS=$WORKERS: 0 to 9 workers" >&2; exit 2; }
mkdir -p "$DIR/data" "$LOGS"

# the ${ENV:...} values of conf/trino/*.properties, for a node about to start; Trino has its own, read-only key
catalog_env() {
  load_credentials
  export APPAREL_TRINO_PORT=$PORT APPAREL_S3_ENDPOINT APPAREL_S3_REGION APPAREL_S3_PATH_STYLE \
    APPAREL_TRINO_S3_ACCESS_KEY APPAREL_TRINO_S3_SECRET_KEY APPAREL_TRINO_METASTORE_DIR
  unset APPAREL_S3_ACCESS_KEY APPAREL_S3_SECRET_KEY
}

# stop_node DIR WHAT: stop the node whose folder is DIR (the launcher, else its pid), within 30 s
stop_node() {
  JAVA=${JAVA:-$(find_java)}
  launcher --node "$1" stop >&2 || stop_pid "$1/trino.pid"
  for _ in $(seq 1 30); do pid_alive "$1/trino.pid" || break; sleep 1; done
  pid_alive "$1/trino.pid" && stop_pid "$1/trino.pid"
  echo "[$NAME] $2 stopped" >&2
}

# copy_etc DIR: conf/trino into DIR, with the JVM flags of APPAREL_TRINO_JAVA_OPTIONS (whitespace-separated) added
# to its jvm.config; flags that choose a garbage collector replace the config's (G1: a JVM refuses two collectors).
# The tests start Trino with the quick JIT only and the serial collector: a start took 25 CPU seconds instead of 34
copy_etc() {
  rm -rf "$1"; cp -r "$ROOT/conf/trino" "$1"
  local opts=${APPAREL_TRINO_JAVA_OPTIONS:-}
  [ -n "$opts" ] || return 0
  if [[ " $opts " =~ \ -XX:\+Use[A-Za-z0-9]*GC\  ]]; then sed -i -E '/^-XX:\+Use[A-Za-z0-9]*GC$/d; /^-XX:G1/d' "$1/jvm.config"; fi
  printf '%s\n' $opts >> "$1/jvm.config"
}

# configure_worker K: worker K's etc (the coordinator's catalog and JVM, its own port and node id)
configure_worker() {
  local node=$DIR/worker-$1
  mkdir -p "$node/data" "$node/logs"
  copy_etc "$node/etc"
  sed -i -e 's/^coordinator=.*/coordinator=false/' -e '/^node-scheduler.include-coordinator=/d' \
    -e "s/^http-server.http.port=.*/http-server.http.port=$((PORT + $1))/" "$node/etc/config.properties"
  printf 'node.environment=apparel\nnode.id=apparel-worker-%s\nnode.data-dir=%s\nnode.internal-address=127.0.0.1\n' \
    "$1" "$node/data" > "$node/etc/node.properties"
}
case "${1:-start}" in
  start)
    if node_running "$DIR"; then
      echo "[$NAME] already running on 127.0.0.1:$PORT" >&2
    else
      install_trino
      JAVA=$(find_java)
      port_free "$PORT" || { echo "[$NAME] port $PORT (APPAREL_TRINO_URL) is in use by another program" >&2; exit 1; }
      copy_etc "$DIR/etc"
      printf 'node.environment=apparel\nnode.id=apparel-local\nnode.data-dir=%s\nnode.internal-address=127.0.0.1\n' \
        "$DIR/data" > "$DIR/etc/node.properties"
      if [ "$WORKERS" -gt 0 ]; then  # the coordinator only plans and coordinates: the workers run the splits
        sed -i 's/^node-scheduler.include-coordinator=.*/node-scheduler.include-coordinator=false/' "$DIR/etc/config.properties"
      fi
      catalog_env
      echo "[$NAME] starting Trino $VERSION on 127.0.0.1:$PORT with $JAVA (logs: $LOGS)" >&2
      launcher start >&2
      wait_until 30 "running its JVM" "" "$LOGS/launcher.log" node_jvm "$DIR"
      adopt "$DIR"
    fi
    # a JVM that dies before its logging starts leaves its reason in the launcher's log only
    wait_until 240 "started" "$DIR/trino.pid" "$LOGS/launcher.log $LOGS/server.log" started
    for k in $(seq 1 "$WORKERS"); do
      node=$DIR/worker-$k
      node_running "$node" && continue
      port_free $((PORT + k)) || { echo "[$NAME] port $((PORT + k)) (worker $k) is in use by another program" >&2; exit 1; }
      JAVA=${JAVA:-$(find_java)}
      configure_worker "$k"
      catalog_env
      echo "[$NAME] starting worker $k on 127.0.0.1:$((PORT + k)) (logs: $node/logs)" >&2
      launcher --node "$node" start >&2
      wait_until 30 "running worker $k's JVM" "" "$node/logs/launcher.log" node_jvm "$node"
      adopt "$node"
    done
    if [ "$WORKERS" -gt 0 ]; then
      wait_until 240 "listing $WORKERS worker(s)" "$DIR/trino.pid" "$DIR/worker-1/logs/server.log" workers_listed
    fi
    echo "[$NAME] ready: $APPAREL_TRINO_URL (catalog lakehouse)$([ "$WORKERS" -gt 0 ] && echo ", $WORKERS worker(s)")" >&2
    ;;
  stop)
    for node in "$DIR"/worker-*; do
      [ -d "$node" ] && node_running "$node" || continue
      stop_node "$node" "${node##*/}"
    done
    if node_running "$DIR"; then
      stop_node "$DIR" coordinator
    else
      echo "[$NAME] not running" >&2
    fi
    ;;
  status)
    if node_running "$DIR"; then echo "[$NAME] running: $APPAREL_TRINO_URL" >&2; else echo "[$NAME] stopped" >&2; exit 3; fi
    ;;
  *)
    echo "usage: $0 {start|stop|status}" >&2; exit 2
    ;;
esac
