#!/usr/bin/env bash
# The project's Kafka broker, natively, with no Docker: one node in KRaft mode (broker and controller in one JVM).
#
#   scripts/kafka.sh start    resolve the jars if missing, format the log dir once, start, wait for the port
#   scripts/kafka.sh stop
#   scripts/kafka.sh status
#   scripts/kafka.sh classpath   the JVM classpath (also Kafka Connect's: scripts/connect.sh)
#
# Kafka 4.4 comes from Maven Central as jars (org.apache.kafka:kafka_2.13 and its dependencies, kafka-tools,
# which brings the Kafka Connect runtime, plus the log4j2 SLF4J binding the artifacts lack), resolved by the project's resolver (apparel.jars, standalone mode) into
# ~/.cache/apparel/kafka-jars/<hash>/. It listens on 127.0.0.1 at the port of APPAREL_KAFKA_BOOTSTRAP (default
# 127.0.0.1:19092), its controller on the next port. Data and logs: .services/kafka/.
set -euo pipefail
NAME=kafka
. "$(dirname "${BASH_SOURCE[0]}")/services-lib.sh"
load_settings

VERSION=4.4.0
PACKAGES="org.apache.kafka:kafka_2.13:$VERSION org.apache.kafka:kafka-tools:$VERSION org.apache.logging.log4j:log4j-slf4j-impl:2.25.5"
DIR=$SERVICES_DIR/kafka
LOGS=$DIR/logs
BOOTSTRAP=$APPAREL_KAFKA_BOOTSTRAP
PORT=${BOOTSTRAP##*:}
CONTROLLER_PORT=$((PORT + 1))
HEAP=${APPAREL_KAFKA_HEAP:-512m}

classpath() {
  # the resolver prints one jar per line; the JVM takes them joined with ':'
  (cd "$ROOT" && "$PY" -c 'import sys
from apparel.jars import resolve
print(":".join(resolve(sys.argv[2:], sys.argv[1], standalone=True, log=lambda m: print("[kafka] " + m, file=sys.stderr))))' \
    "$CACHE_ROOT/kafka-jars" $PACKAGES)
}

write_config() {
  mkdir -p "$DIR/data" "$LOGS"
  cat > "$DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
# one broker: the internal topics cannot have the default three replicas
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# topics are created on purpose (by the project or Kafka Connect), never by a typo
auto.create.topics.enable=false
EOF
  write_log4j2 "$DIR/log4j2.properties" "$LOGS/server.log"
}

java_cmd() { echo "$(java_bin) -Xms128m -Xmx$HEAP $SERVICE_JAVA_OPTIONS -Dlog4j2.configurationFile=file:$DIR/log4j2.properties -cp $CP"; }
# ready: the broker answers metadata requests and every partition has a leader (after a restart the
# controller takes a few seconds to elect them; clients asking earlier get NOT_LEADER_FOR_PARTITION)
listening() {
  "$PY" -c 'import sys
from confluent_kafka.admin import AdminClient
md = AdminClient({"bootstrap.servers": sys.argv[1]}).list_topics(timeout=3)
sys.exit(0 if md.brokers and all(p.leader >= 0 and p.error is None for t in md.topics.values() for p in t.partitions.values()) else 1)' "$BOOTSTRAP"
}

case "$(url_host "http://$BOOTSTRAP")" in
  127.0.0.1|localhost) ;;
  *) echo "[$NAME] APPAREL_KAFKA_BOOTSTRAP=$BOOTSTRAP is not on this machine: the native broker serves 127.0.0.1 only" >&2; exit 1 ;;
esac
case "${1:-start}" in
  start)
    if pid_alive "$DIR/kafka.pid"; then
      echo "[$NAME] already running on $BOOTSTRAP" >&2
    else
      for p in "$PORT" "$CONTROLLER_PORT"; do
        port_free "$p" || { echo "[$NAME] port $p is in use by another program (APPAREL_KAFKA_BOOTSTRAP=$BOOTSTRAP)" >&2; exit 1; }
      done
      CP=$(classpath)
      write_config
      if [ ! -f "$DIR/data/meta.properties" ]; then
        cluster=$($(java_cmd) kafka.tools.StorageTool random-uuid)
        echo "[$NAME] formatting $DIR/data (cluster $cluster)" >&2
        $(java_cmd) kafka.tools.StorageTool format --standalone -t "$cluster" -c "$DIR/server.properties" >> "$LOGS/format.log" 2>&1 \
          || { echo "[$NAME] could not format $DIR/data:" >&2; tail -20 "$LOGS/format.log" >&2; exit 1; }
      fi
      echo "[$NAME] starting Kafka $VERSION (KRaft, one node) on $BOOTSTRAP (logs: $LOGS)" >&2
      nohup $(java_cmd) kafka.Kafka "$DIR/server.properties" > "$LOGS/stdout.log" 2>&1 &
      echo $! > "$DIR/kafka.pid"
    fi
    wait_until 120 "serving with every partition led" "$DIR/kafka.pid" "$LOGS/server.log" listening
    echo "[$NAME] ready: $BOOTSTRAP" >&2
    ;;
  stop)
    stop_command "$DIR/kafka.pid"
    ;;
  classpath)
    classpath
    ;;
  status)
    status_command "$DIR/kafka.pid" "$BOOTSTRAP"
    ;;
  *)
    echo "usage: $0 {start|stop|status|classpath}" >&2; exit 2
    ;;
esac
