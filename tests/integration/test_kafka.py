"""The project's Kafka broker (scripts/kafka.sh: KRaft, one node, jars from Maven Central): it starts, takes and
serves records exactly as sent, keeps them across a restart, and refuses topics nobody created."""

from __future__ import annotations

import subprocess
import time

import pytest

from apparel.config import PROJECT_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.cdc]
SCRIPT = PROJECT_ROOT / "scripts" / "kafka.sh"
BOOTSTRAP = "127.0.0.1:19092"


def kafka(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), cmd], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def broker():
    was_up = kafka("status").returncode == 0
    proc = kafka("start")
    assert proc.returncode == 0, proc.stderr
    yield BOOTSTRAP
    if not was_up:
        kafka("stop")


def consume(topic: str, n: int, group: str, timeout: float = 60) -> list[tuple[str, str, int]]:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, start = [], time.monotonic()
    while len(got) < n and time.monotonic() - start < timeout:
        m = c.poll(1)
        if m is not None and m.error() is None:
            got.append((m.key().decode(), m.value().decode(), m.offset()))
    c.close()
    return got


def test_records_come_back_as_sent_and_survive_a_restart(broker):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"smoke-{time.time_ns()}"
    admin = AdminClient({"bootstrap.servers": broker})  # kept alive until the topic exists
    futures = admin.create_topics([NewTopic(topic, 1, 1)])
    for f in futures.values():
        f.result(30)
    sent = [(str(i), f'{{"order_id": {i}}}') for i in range(200)]
    p = Producer({"bootstrap.servers": broker, "enable.idempotence": True})
    for key, value in sent:
        p.produce(topic, key=key, value=value)
    assert p.flush(30) == 0
    got = consume(topic, len(sent), "first")
    assert [(k, v) for k, v, _ in got] == sent and [o for *_, o in got] == list(range(200))

    assert kafka("stop").returncode == 0
    assert kafka("status").returncode == 3
    assert kafka("start").returncode == 0
    assert [(k, v) for k, v, _ in consume(topic, len(sent), "after-restart")] == sent


def test_a_topic_nobody_created_is_refused(broker):
    from confluent_kafka import KafkaException, Producer

    errors = []
    p = Producer({"bootstrap.servers": broker, "message.timeout.ms": 5000,
                  "error_cb": lambda e: errors.append(e)})
    delivered = []
    p.produce(f"typo-{time.time_ns()}", value="x", on_delivery=lambda err, msg: delivered.append(err))
    p.flush(15)
    assert delivered and delivered[0] is not None, "a record to a topic nobody created was accepted"
    with pytest.raises(KafkaException):
        raise KafkaException(delivered[0])
