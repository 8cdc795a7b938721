#!/usr/bin/env bash
# Kafka Connect with Debezium's PostgreSQL connector, natively, with no Docker: one distributed worker (offsets,
# configs and statuses in Kafka topics, exactly-once source support on), on the Kafka classpath of
# scripts/kafka.sh, with the connector plugin from Maven Central.
#
#   scripts/connect.sh start    fetch the plugin if missing, start the worker, wait until it lists the connector
#   scripts/connect.sh stop
#   scripts/connect.sh status
#
# The REST API listens on 127.0.0.1 at the port of APPAREL_CONNECT_URL (default http://127.0.0.1:18083). It needs
# the broker (scripts/kafka.sh start). The connector itself is registered by `apparel cdc register`.
# Plugin: ~/.cache/apparel/debezium-postgres/<version>/ (checked against its SHA-256); data and logs:
# .services/connect/.
set -euo pipefail
NAME=connect
HERE=$(dirname "${BASH_SOURCE[0]}")
. "$HERE/services-lib.sh"
load_settings

DEBEZIUM=3.6.1.Final
PLUGIN_SHA256=408b00c073b27ddaa7af34684f60fcf5bbf6605de68a8662ec9462f2a88880d2
PLUGIN_URL=https://repo1.maven.org/maven2/io/debezium/debezium-connector-postgres/$DEBEZIUM/debezium-connector-postgres-$DEBEZIUM-plugin.tar.gz
PLUGINS=$CACHE_ROOT/debezium-postgres/$DEBEZIUM
DIR=$SERVICES_DIR/connect
LOGS=$DIR/logs
URL=$APPAREL_CONNECT_URL
PORT=$(url_port "$URL")
BOOTSTRAP=$APPAREL_KAFKA_BOOTSTRAP
HEAP=${APPAREL_CONNECT_HEAP:-512m}
CONNECTOR_CLASS=io.debezium.connector.postgresql.PostgresConnector

fetch_plugin() {
  [ -f "$PLUGINS/.complete" ] && return
  local tmp
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/debezium.XXXXXX")
  echo "[$NAME] downloading debezium-connector-postgres $DEBEZIUM (25 MB, first run only)" >&2
  curl -fsSL --retry 3 -o "$tmp/plugin.tar.gz" "$PLUGIN_URL" \
    || { echo "[$NAME] could not download $PLUGIN_URL" >&2; rm -rf "$tmp"; exit 1; }
  if [ "$(sha256sum "$tmp/plugin.tar.gz" | cut -d' ' -f1)" != "$PLUGIN_SHA256" ]; then
    echo "[$NAME] $PLUGIN_URL does not have the expected SHA-256 $PLUGIN_SHA256" >&2; rm -rf "$tmp"; exit 1
  fi
  mkdir -p "$PLUGINS"
  tar -xzf "$tmp/plugin.tar.gz" -C "$PLUGINS"
  rm -rf "$tmp"
  touch "$PLUGINS/.complete"
}

write_config() {
  mkdir -p "$LOGS"
  cat > "$DIR/worker.properties" <<CONF
bootstrap.servers=$BOOTSTRAP
group.id=apparel-connect
# offsets, connector configs and statuses live in Kafka: the worker restarts where it stopped
config.storage.topic=_apparel_connect_configs
offset.storage.topic=_apparel_connect_offsets
status.storage.topic=_apparel_connect_status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.flush.interval.ms=1000
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=false
value.converter.schemas.enable=false
listeners=http://127.0.0.1:$PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$PORT
plugin.path=$PLUGINS
plugin.discovery=service_load
# source records and their offsets are written in one Kafka transaction (KIP-618)
exactly.once.source.support=enabled
CONF
  write_log4j2 "$DIR/log4j2.properties" "$LOGS/connect.log" \
    "logger.reflections.name = org.reflections" "logger.reflections.level = ERROR"
}

ready() { curl -fsS "$URL/connector-plugins" 2>/dev/null | grep -q "$CONNECTOR_CLASS"; }
broker_up() { "$PY" -c 'import socket,sys; h,p=sys.argv[1].rsplit(":",1); socket.create_connection((h,int(p)),2).close()' "$BOOTSTRAP"; }

require_local APPAREL_CONNECT_URL "$URL"
case "${1:-start}" in
  start)
    if pid_alive "$DIR/connect.pid"; then
      echo "[$NAME] already running on $URL" >&2
    else
      broker_up || { echo "[$NAME] no Kafka broker at $BOOTSTRAP: run scripts/kafka.sh start first" >&2; exit 1; }
      port_free "$PORT" || { echo "[$NAME] port $PORT is in use by another program (APPAREL_CONNECT_URL=$URL)" >&2; exit 1; }
      fetch_plugin
      CP=$(bash "$HERE/kafka.sh" classpath)
      write_config
      echo "[$NAME] starting Kafka Connect (distributed, one worker) with Debezium $DEBEZIUM on $URL (logs: $LOGS)" >&2
      # shellcheck disable=SC2086 # the flags are words
      nohup "$(java_bin)" -Xms128m -Xmx"$HEAP" $SERVICE_JAVA_OPTIONS -Dlog4j2.configurationFile="file:$DIR/log4j2.properties" -cp "$CP" \
        org.apache.kafka.connect.cli.ConnectDistributed "$DIR/worker.properties" > "$LOGS/stdout.log" 2>&1 &
      echo $! > "$DIR/connect.pid"
    fi
    wait_until 180 "serving the Debezium connector" "$DIR/connect.pid" "$LOGS/connect.log" ready
    echo "[$NAME] ready: $URL" >&2
    ;;
  stop)
    stop_command "$DIR/connect.pid"
    ;;
  status)
    status_command "$DIR/connect.pid" "$URL"
    ;;
  *)
    echo "usage: $0 {start|stop|status}" >&2; exit 2
    ;;
esac
