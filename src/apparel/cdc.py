"""Change data capture from the store database: the PostgreSQL side and the Debezium connector.

The path (README "Real-time path"): PostgreSQL's logical WAL -> a replication slot -> Kafka Connect running
Debezium's PostgreSQL connector (``pgoutput``) -> one Kafka topic per store table (``<prefix>.public.<table>``)
-> ``apparel stream`` -> Delta.

- :func:`prepare_source` (``apparel cdc prepare``) readies a store database: full replica identity on the five
  store tables (they have no primary key, so an UPDATE or DELETE must carry the whole old row), the project's
  publication of exactly those tables (never the connector's auto-created one) and SELECT for the capture role.
- :func:`register` (``apparel cdc register``) puts the connector's configuration (:func:`connector_config`) to
  Kafka Connect and waits until its task runs; :func:`drop` (``apparel cdc drop``) deletes the connector, its
  replication slot and its topics, so no WAL is kept for a capture that is gone.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote, unquote, urlparse

from apparel.errors import ConfigError, SourceError
from apparel.schemas import STORE_TABLES
from apparel.store import StoreDB

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"


def refuse_shards(settings) -> None:
    """Raise :class:`ConfigError` when the store is sharded (``APPAREL_STORE_SHARD_URLS``): the capture reads one
    database's WAL, and a coordinator's holds none of the orders its shards store (docs/topology.md, *Change
    data capture and the shards*). A connector per shard primary is not built yet."""
    if settings.store_shard_urls:
        raise ConfigError(
            "change data capture (APPAREL_CDC) does not cover a sharded store (APPAREL_STORE_SHARD_URLS): the "
            "coordinator's WAL holds none of the shards' orders, so the stream would see none of them; run the "
            "batch path over the shards (unset APPAREL_CDC), or capture one unsharded store (docs/topology.md)")


def _store(settings) -> StoreDB:
    db = StoreDB(settings.store_db)
    if db.kind != "postgresql":
        raise ConfigError(f"change data capture needs the store on PostgreSQL (APPAREL_STORE_DB), not {db.redacted}")
    return db


def capture_db(settings) -> StoreDB:
    """The store database as the capture role (it owns the replication slot, so it is the one to drop it)."""
    cdc = settings.cdc
    url = urlparse(_store(settings).url)
    auth = cdc.user + (f":{quote(cdc.password, safe='')}" if cdc.password else "")
    host = url.hostname or "127.0.0.1"
    return StoreDB(url._replace(netloc=f"{auth}@{host}:{url.port or 5432}").geturl())


def prepare_source(settings, log=print) -> None:
    """Ready the store database for capture; idempotent. Needs the table owner's URL (``APPAREL_STORE_DB``);
    the capture role itself must exist with REPLICATION (``scripts/postgres.sh`` creates it locally)."""
    refuse_shards(settings)
    cdc = settings.cdc
    db = _store(settings)
    db.create_schema(STORE_TABLES)
    names = [t.name for t in STORE_TABLES]
    with db.connect() as conn:
        cur = conn.cursor()
        cur.execute("SELECT rolreplication FROM pg_roles WHERE rolname = %s", (cdc.user,))
        row = cur.fetchone()
        if row is None or not row[0]:
            raise SourceError(
                f"the capture role {cdc.user} (APPAREL_CDC_USER) is missing or lacks REPLICATION on {db.redacted}: "
                f"as a superuser, run CREATE ROLE {cdc.user} LOGIN REPLICATION PASSWORD '...'")
        for name in names:
            # no primary key: without FULL, PostgreSQL refuses UPDATE and DELETE on a published table
            cur.execute(f"ALTER TABLE {name} REPLICA IDENTITY FULL")
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (cdc.publication,))
        tables = ", ".join(names)
        if cur.fetchone() is None:
            cur.execute(f"CREATE PUBLICATION {cdc.publication} FOR TABLE {tables}")
            log(f"[cdc] publication {cdc.publication} created for {tables}")
        else:
            cur.execute(f"ALTER PUBLICATION {cdc.publication} SET TABLE {tables}")
        cur.execute("SELECT current_database()")
        dbname = cur.fetchone()[0]
        cur.execute(f'GRANT CONNECT ON DATABASE "{dbname}" TO {cdc.user}')
        cur.execute(f"GRANT USAGE ON SCHEMA public TO {cdc.user}")
        cur.execute(f"GRANT SELECT ON {tables} TO {cdc.user}")
    log(f"[cdc] {db.redacted} ready: logical WAL, replica identity full, publication {cdc.publication}, "
        f"role {cdc.user} with SELECT")


def connector_config(settings) -> dict[str, str]:
    """The Debezium connector's configuration for the store database of ``settings``."""
    cdc = settings.cdc
    url = urlparse(_store(settings).url)
    keys = ";".join(f"public.{t.name}:{','.join(t.key)}" for t in STORE_TABLES)
    config = {
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": url.hostname or "127.0.0.1",
        "database.port": str(url.port or 5432),
        "database.dbname": unquote(url.path.lstrip("/")),
        "database.user": cdc.user,
        "topic.prefix": cdc.topic_prefix,
        "slot.name": cdc.slot,
        "publication.name": cdc.publication,
        "publication.autocreate.mode": "disabled",
        "table.include.list": ",".join(f"public.{t.name}" for t in STORE_TABLES),
        # the tables have no primary key: the natural keys become the records' keys
        "message.key.columns": keys,
        # the history arrives as the initial snapshot (op "r"): the hand-off from the batch (README)
        "snapshot.mode": "initial",
        "decimal.handling.mode": "string",
        "time.precision.mode": "adaptive",
        "heartbeat.interval.ms": str(cdc.heartbeat_ms),
        "tombstones.on.delete": "false",
        "exactly.once.support": "required",
        "transaction.boundary": "poll",
        "topic.creation.default.partitions": "1",
        "topic.creation.default.replication.factor": "1",
    }
    if cdc.password:
        config["database.password"] = cdc.password
    return config


# what Kafka Connect answers while its worker (re)joins the group: try again
BUSY = (409, 500, 503, 504)


def _request(settings, method: str, path: str, body: dict | None = None, ok=(200, 201, 202, 204),
             until: float | None = None):
    """One call of Kafka Connect's REST API. ``until`` (a ``time.monotonic()`` deadline): until then, a worker
    that is not reachable, too slow to answer or busy rebalancing (HTTP 409/500/503/504, as just after a restart)
    is asked again every 2 s."""
    import requests

    url = settings.cdc.connect_url + path
    while True:
        try:
            resp = requests.request(method, url, json=body, timeout=30)
        except requests.RequestException as exc:
            if until is not None and time.monotonic() < until:
                time.sleep(2)
                continue
            raise SourceError(f"Kafka Connect is not reachable at {settings.cdc.connect_url} (APPAREL_CONNECT_URL): "
                              f"{type(exc).__name__}; start it with scripts/services.sh up (APPAREL_CDC=1)") from None
        if resp.status_code in ok:
            return resp.json() if resp.content else None
        if resp.status_code in BUSY and until is not None and time.monotonic() < until:
            time.sleep(2)
            continue
        raise SourceError(f"Kafka Connect {method} {path}: HTTP {resp.status_code} {resp.text[:300]}")


def status(settings, until: float | None = None) -> dict | None:
    """The connector's status from Kafka Connect (state of the connector and its tasks), None if absent;
    ``until``: see :func:`_request`."""
    name = settings.cdc.topic_prefix
    got = _request(settings, "GET", f"/connectors/{name}/status", ok=(200, 404), until=until)
    return None if got is None or "connector" not in got else got


def register(settings, log=print, timeout: float = 300) -> dict:
    """Create or update the connector and wait until its task runs; a failed task is restarted once, then
    raises with its trace. A worker that is still starting or rebalancing is waited for, within ``timeout``."""
    refuse_shards(settings)
    name = settings.cdc.topic_prefix
    deadline = time.monotonic() + timeout
    _request(settings, "PUT", f"/connectors/{name}/config", connector_config(settings), until=deadline)
    restarted = False
    while True:
        st = status(settings, until=deadline)
        tasks = (st or {}).get("tasks") or []
        states = [t.get("state") for t in tasks] + [(st or {}).get("connector", {}).get("state")]
        failed = "FAILED" in states
        if failed and not restarted:  # after a broker or database outage: one restart of what failed
            log(f"[cdc] connector {name} had failed; restarting it")
            _request(settings, "POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=true",
                     until=deadline)
            restarted = True
            time.sleep(2)
            continue
        if failed:
            trace = next((t.get("trace", "") for t in tasks if t.get("trace")), "")
            raise SourceError(f"connector {name} failed: {trace.splitlines()[0] if trace else json.dumps(st)}")
        if tasks and all(t.get("state") == "RUNNING" for t in tasks):
            log(f"[cdc] connector {name} running: topics {settings.cdc.topic_prefix}.public.<table>, "
                f"slot {settings.cdc.slot}")
            return st
        if time.monotonic() > deadline:
            raise SourceError(f"connector {name} not running after {timeout:.0f} s: {json.dumps(st)}")
        time.sleep(1)


def heartbeat_topic(settings) -> str:
    return f"__debezium-heartbeat.{settings.cdc.topic_prefix}"


def topics(settings) -> list[str]:
    """The connector's topics: one per store table, plus Debezium's heartbeat topic."""
    return [settings.cdc.topic(t.name) for t in STORE_TABLES] + [heartbeat_topic(settings)]


def drop(settings, log=print, timeout: float = 60) -> None:
    """Delete the connector, then its replication slot (so the database keeps no WAL for it) and its topics.
    What was already landed in the lakehouse stays."""
    cdc = settings.cdc
    name = cdc.topic_prefix
    try:
        _request(settings, "DELETE", f"/connectors/{name}", ok=(200, 204, 404))
    except SourceError as exc:
        log(f"[cdc] {exc}; dropping the slot anyway")
    db = capture_db(settings)
    deadline = time.monotonic() + timeout
    while True:
        rows = db.query("SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = %s", (cdc.slot,))
        if not rows:
            break
        if not rows[0][0]:
            db.query("SELECT pg_drop_replication_slot(%s)", (cdc.slot,))
            log(f"[cdc] replication slot {cdc.slot} dropped")
            break
        if time.monotonic() > deadline:
            # the connector is gone but its walsender lingers: end it, then drop
            db.query("SELECT pg_terminate_backend(%s)", (rows[0][1],))
        time.sleep(0.5)
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": cdc.kafka_bootstrap})
    existing = set(admin.list_topics(timeout=15).topics)
    gone = [t for t in topics(settings) if t in existing]
    if gone:
        for t, fut in admin.delete_topics(gone, operation_timeout=30).items():
            fut.result()
        log(f"[cdc] topics deleted: {', '.join(gone)}")
    log(f"[cdc] connector {name} dropped")


def reset(settings, log=print) -> None:
    """Replay from scratch: drop the capture (connector, slot, topics), the events tables and the stream's
    checkpoint, then register again: Debezium takes a new snapshot, and the next silver run rebuilds the facts
    from it. For a lost slot (past ``max_slot_wal_keep_size``) or a broken checkpoint. Stop the stream first."""
    import shutil
    from pathlib import Path

    from apparel.catalog import Catalog
    from apparel.config import is_s3_uri
    from apparel.stream import running_pid

    if running_pid(settings):
        raise SourceError("the stream is running: apparel stream stop first")
    if settings.on_s3 or is_s3_uri(settings.stream.checkpoint):
        raise SourceError("apparel cdc reset removes local folders only; on s3a:// delete "
                          f"{settings.lakehouse}/bronze/cdc_* and {settings.stream.checkpoint} with the store's tools")
    drop(settings, log=log)
    catalog = Catalog(settings)
    for t in STORE_TABLES:
        shutil.rmtree(catalog.path(f"bronze.cdc_{t.name}"), ignore_errors=True)
    shutil.rmtree(settings.stream.checkpoint, ignore_errors=True)
    (Path(settings.stream.state_dir) / "status.json").unlink(missing_ok=True)
    log(f"[cdc] events tables and checkpoint {settings.stream.checkpoint} removed")
    register(settings, log=log)
