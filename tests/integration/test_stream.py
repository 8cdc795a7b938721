"""The real-time path on the real services: PostgreSQL (logical WAL) -> Kafka Connect + Debezium -> Kafka ->
``apparel stream`` (Spark Structured Streaming) -> bronze.cdc_* -> silver -> gold.dm_sales_live.

One story on one store database and one lakehouse (A), in order:

1. a batch run lands the store by JDBC, then change data capture starts (``scripts/services.sh up cdc``) and
   the stream takes over orders and order lines from Debezium's initial snapshot: silver must not change
   (no double count at the hand-off);
2. inserts, quantity updates, line and order deletes, an exact duplicate, a line whose amount is wrong and a
   line of an order that does not exist, with a batch run in the middle, and `apparel simulate`'s orders with
   their updates and deletes: the stream keeps going, the bad rows are in quarantine with their reasons, and
   the live mart has the new minutes;
3. kill -9 of the stream during a micro-batch, of Kafka Connect during inserts, and a broker restart: every
   event is in bronze exactly once and every row once in the image;
4. the reconciliation: every silver, quarantine and gold table of A equals what a full batch rebuild (B, change
   data capture off) computes from the database's final state.

Expected values come from the database (pandas over its rows) and from Kafka itself, never from the stream.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from datetime import date, datetime, timedelta

import pandas as pd
import psycopg
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from apparel.catalog import TABLES, Catalog
from apparel.config import PROJECT_ROOT, load_settings
from apparel.jobs.stream import read_status, silver_caught_up
from apparel.pipeline import run_layers
from apparel.schemas import SOURCES
from apparel.seed import seed_generated
from conftest import _fresh_postgres_db, project_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.cdc]

RUN_DATE = date(2026, 3, 1)
NOW = datetime.now().replace(second=0, microsecond=0)
SCRIPTS = PROJECT_ROOT / "scripts"
APPAREL = [str(PROJECT_ROOT / ".venv" / "bin" / "python"), "-m", "apparel.cli", "--env", "ci"]
FACTS = ("orders", "order_details")
# seconds the stream may go without progress (a new micro-batch, a silver run finished) before a wait gives up,
# and the most a wait may take in all: a loaded 2-core machine was seen to take 170 s for a micro-batch and 420 s
# for the first (full) silver run (which changes nothing the wait sees until it ends). The assertions are exact,
# not timed.
STALL = 600
CATCH_UP = 1500


def quiet(_msg):
    pass


def sh(*args, env, timeout=600, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


class Story:
    def __init__(self, spark, root, db_url):
        tag = uuid.uuid4().hex[:8]
        self.spark, self.root, self.db_url = spark, root, db_url
        self.env = {**project_env(root / "a", db_url), "APPAREL_ENV": "ci", "APPAREL_CDC": "1",
                    "APPAREL_CDC_TOPIC_PREFIX": f"t{tag}", "APPAREL_CDC_SLOT": f"t{tag}",
                    "APPAREL_STREAM_CHECKPOINT": str(root / "checkpoint"),
                    "APPAREL_STREAM_STATE_DIR": str(root / "stream"), "APPAREL_STREAM_TRIGGER": "1 second",
                    # silver as soon as events land: the tests wait for it after each step
                    "APPAREL_STREAM_SILVER_INTERVAL": "0",
                    "APPAREL_LIVE_NOW": NOW.isoformat(), "TZ": "UTC"}
        self.on = load_settings(env="ci", environ=self.env)
        self.off = load_settings(env="ci", environ={**self.env, "APPAREL_CDC": ""})
        self.catalog = Catalog(self.on)
        self.prefix = f"t{tag}"
        self.simulated: dict | None = None  # `apparel simulate`'s report (run in step 2)

    def sql(self, statement: str, params=()) -> list[tuple]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    def frame(self, table: str) -> pd.DataFrame:
        cols = SOURCES[table].column_names
        return pd.DataFrame(self.sql(f"SELECT {', '.join(cols)} FROM {table}"), columns=cols)

    def events(self, table: str):
        return self.catalog.read(self.spark, f"bronze.cdc_{table}")

    def kafka_records(self, table: str) -> int:
        """Records in the table's topic, read back from Kafka (read_committed): the truth the stream must land."""
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        c = Consumer({"bootstrap.servers": self.on.cdc.kafka_bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                      "isolation.level": "read_committed", "enable.auto.commit": False})
        tp = TopicPartition(self.on.cdc.topic(table), 0)
        for attempt in range(30):  # just after a broker restart the partition may have no leader yet
            try:
                low, high = c.get_watermark_offsets(tp, timeout=10)
                break
            except KafkaException:
                if attempt == 29:
                    raise
                time.sleep(1)
        c.assign([TopicPartition(tp.topic, 0, low)])
        n, idle = 0, 0
        # up to the end; the last offsets may be transaction markers, which a reader never receives
        while idle < 3:
            msgs = c.consume(1000, timeout=1)
            n += sum(1 for m in msgs if m.error() is None and m.value() is not None)
            position = c.position([tp])[0].offset
            if position >= high:
                break
            idle = 0 if msgs else idle + 1
        c.close()
        return n

    def status(self) -> dict:
        proc = sh(*APPAREL, "stream", "status", "--json", env=self.env, check=False)
        return json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}

    def wait_caught_up(self) -> None:
        """Until the stream has landed and applied everything Debezium put in Kafka for the fact tables. Polls
        cheaply (the status in-process: its file and Kafka's offsets) and counts Kafka's records and the landed
        events only once no message is left: the waiting must not take the CPU the stream needs."""
        from apparel.stream import status

        start = time.monotonic()
        cap, deadline = start + CATCH_UP, start + STALL
        want, seen = None, None

        def progress(st: dict) -> None:  # events landed or silver moved: wait STALL more seconds (up to the cap)
            nonlocal deadline, seen
            now = (st.get("last_events_batch"), st.get("silver_finished_at"), st.get("silver_running"))
            if now != seen:
                seen, deadline = now, min(cap, time.monotonic() + STALL)

        while time.monotonic() < deadline:
            st = status(self.on)
            progress(st)
            if st.get("lag_messages") == 0 and st.get("running"):
                # Debezium needs a moment to publish the last commit: the topic's count stops moving
                got = {t: self.kafka_records(t) for t in FACTS}
                landed = {t: self.events(t).count() for t in FACTS}
                if got == want and landed == got:
                    # silver (which runs behind the query) has applied the last batch that landed events
                    while time.monotonic() < deadline:
                        st = read_status(self.on)
                        if silver_caught_up(st):
                            return
                        progress(st)
                        time.sleep(0.5)
                want = got
            time.sleep(2)
        raise AssertionError(f"the stream did not catch up in {time.monotonic() - start:.0f} s (no progress for "
                             f"{STALL} s, or {CATCH_UP} s in all): Kafka {want}, status {self.status()}; "
                             f"log:\n{(self.root / 'stream' / 'stream.log').read_text()[-3000:]}")

    def fact_totals(self) -> dict:
        lines = self.catalog.read(self.spark, "silver.fct_order_lines")
        row = lines.agg(F.count(F.lit(1)), F.sum("qty"), F.sum("line_revenue")).collect()[0]
        return {"lines": row[0], "units": row[1], "revenue": row[2]}


@pytest.fixture(scope="module")
def story(spark, postgres_server, tmp_path_factory):
    s = Story(spark, tmp_path_factory.mktemp("stream"), _fresh_postgres_db(postgres_server))
    seed_generated(s.off, scale=0.05, seed=5, log=quiet)
    run_layers(spark, s.off, ["bronze", "silver", "gold"], log=quiet, run_date=RUN_DATE)  # the batch before CDC
    s.before = {n: s.catalog.read(spark, n).localCheckpoint() for n in ("silver.fct_order_lines", "silver.fct_orders")}
    was_up = sh("bash", str(SCRIPTS / "services.sh"), "status", "cdc", env=s.env, check=False).returncode == 0
    sh("bash", str(SCRIPTS / "services.sh"), "up", "cdc", env=s.env)
    yield s
    sh(*APPAREL, "stream", "stop", env=s.env, check=False)
    sh(*APPAREL, "cdc", "drop", env=s.env, check=False)
    if not was_up:  # Kafka Connect and Kafka; the PostgreSQL server is the session's
        sh("bash", str(SCRIPTS / "services.sh"), "down", "cdc", env=s.env, check=False)


def test_services_env_reaches_the_capture(story):
    out = sh("bash", str(SCRIPTS / "services.sh"), "env", env=story.env).stdout
    env = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export "))
    assert env["APPAREL_KAFKA_BOOTSTRAP"] == story.on.cdc.kafka_bootstrap
    assert env["APPAREL_CONNECT_URL"] == story.on.cdc.connect_url
    assert env["APPAREL_CDC"] == "1"
    assert env["APPAREL_STORE_DB"].startswith("postgresql://")
    # the store is ready: a publication of exactly the five store tables, full replica identity
    published = {r[0] for r in story.sql("SELECT tablename FROM pg_publication_tables WHERE pubname = %s",
                                         (story.on.cdc.publication,))}
    assert published == {"customers", "products", "product_categories", "orders", "order_details"}
    ident = dict(story.sql("SELECT relname, relreplident FROM pg_class WHERE relname = ANY(%s)",
                           (list(published),)))
    assert set(ident.values()) == {"f"}


def test_the_capture_role_reads_but_cannot_write(story):
    url = story.db_url.replace("postgresql://apparel@", f"postgresql://{story.on.cdc.user}@")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] > 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM orders")


def test_the_snapshot_hands_off_without_double_counting(story, spark):
    sh(*APPAREL, "stream", "start", env=story.env, timeout=400)
    story.wait_caught_up()
    for t in FACTS:  # the initial snapshot: one read event per database row
        ops = {r[0]: r[1] for r in story.events(t).groupBy("op").count().collect()}
        assert ops == {"r": len(story.frame(t))}
    for name, before in story.before.items():
        assertDataFrameEqual(story.catalog.read(spark, name), before)


def _new_order(cur, order_id: int, when: datetime, lines: list[tuple[int, int]]) -> None:
    """An order at ``when`` with ``lines`` of (product_id, qty), priced from the products table."""
    cust, prov, city = cur.execute(
        "SELECT o.customer_id, o.province_id, o.city_id FROM orders o WHERE o.customer_id IS NOT NULL "
        "AND o.city_id IS NOT NULL ORDER BY o.order_id LIMIT 1").fetchone()
    cur.execute("INSERT INTO orders VALUES (%s, %s, %s, %s, %s)", (order_id, when, cust, prov, city))
    for i, (product, qty) in enumerate(lines, start=1):
        price = cur.execute("SELECT price FROM products WHERE product_id = %s LIMIT 1", (product,)).fetchone()[0]
        cur.execute("INSERT INTO order_details VALUES (%s, %s, %s, %s, %s, %s)",
                    (order_id * 10 + i, order_id, product, qty, price, qty * price))


def test_inserts_updates_deletes_and_bad_rows_while_a_batch_runs(story, spark):
    top = story.sql("SELECT max(order_id) FROM orders")[0][0]
    products = [r[0] for r in story.sql("SELECT product_id FROM products ORDER BY product_id LIMIT 4")]
    old_line = story.sql("SELECT order_id, order_detail_id, qty, item_price FROM order_details "
                         "WHERE qty IS NOT NULL AND item_price IS NOT NULL AND unit_sales = qty * item_price "
                         "ORDER BY order_id LIMIT 1")[0]
    old_order = top if top != old_line[0] else None  # the last order before the new ones goes entirely
    with psycopg.connect(story.db_url) as conn:
        cur = conn.cursor()
        for k in range(1, 6):
            _new_order(cur, top + k, NOW - timedelta(minutes=k), [(products[0], 1), (products[1], k)])
    # a batch run while the stream works: it skips the captured tables and waits for the writer lock
    batch = threading.Thread(target=run_layers, args=(spark, story.on, ["bronze", "silver", "gold"]),
                             kwargs={"log": quiet, "run_date": RUN_DATE})
    batch.start()
    with psycopg.connect(story.db_url) as conn:
        cur = conn.cursor()
        oid, did, qty, price = old_line
        cur.execute("UPDATE order_details SET qty = %s, unit_sales = %s WHERE order_id = %s AND order_detail_id = %s",
                    (qty + 2, (qty + 2) * price, oid, did))
        cur.execute("UPDATE order_details SET qty = 5, unit_sales = 5 * item_price WHERE order_id = %s AND "
                    "order_detail_id = %s", (top + 1, (top + 1) * 10 + 2))
        cur.execute("DELETE FROM order_details WHERE order_id = %s AND order_detail_id = %s",
                    (top + 2, (top + 2) * 10 + 1))
        if old_order is not None:
            cur.execute("DELETE FROM order_details WHERE order_id = %s", (old_order,))
            cur.execute("DELETE FROM orders WHERE order_id = %s", (old_order,))
        # an exact duplicate of a new line, a line whose amount is wrong, a line of no order
        cur.execute("INSERT INTO order_details SELECT * FROM order_details WHERE order_id = %s AND "
                    "order_detail_id = %s", (top + 3, (top + 3) * 10 + 1))
        cur.execute("INSERT INTO order_details VALUES (%s, %s, %s, 2, 1000, 1999)", ((top + 4) * 10 + 3, top + 4,
                                                                                    products[2]))
        cur.execute("INSERT INTO order_details VALUES (1, %s, %s, 1, 1000, 1000)", (top + 999, products[3]))
    # `apparel simulate` as a person would run it, meanwhile: its orders follow these (its own ids, its own
    # lines changed and deleted); the same catch-up serves the next test, which checks them
    story.simulated = json.loads(sh(*APPAREL, "simulate", "--rate", "10", "--duration", "6", "--updates", "0.2",
                                    "--deletes", "0.1", "--seed", "3", "--json", env=story.env).stdout)
    batch.join(timeout=900)
    assert not batch.is_alive()
    story.wait_caught_up()
    st = story.status()
    assert st["running"]
    q = story.catalog.read(spark, "quarantine.order_details")
    reasons = {(r["order_id"], r["_reason"]) for r in q.collect()}
    assert (top + 4, "amount_mismatch") in reasons
    assert (top + 999, "missing_order") in reasons
    # the facts equal pandas over the database's valid rows of the new orders
    db = story.frame("order_details")
    mine = db[db.order_id.between(top + 1, top + 5)]
    mine = mine[mine.unit_sales == mine.qty * mine.item_price].drop_duplicates()
    lines = story.catalog.read(spark, "silver.fct_order_lines").where(F.col("order_id").between(top + 1, top + 5))
    got = lines.select("order_id", "order_detail_id", "qty").toPandas().sort_values(
        ["order_id", "order_detail_id"]).reset_index(drop=True)
    want = mine[["order_id", "order_detail_id", "qty"]].sort_values(["order_id", "order_detail_id"]) \
        .reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got.dtypes.to_dict() == {"order_id": "int64", "order_detail_id": "int64", "qty": "int64"}
    if old_order is not None:
        assert story.catalog.read(spark, "silver.fct_orders").where(F.col("order_id") == old_order).count() == 0
    # the live mart: per minute, from the database's valid new lines (their prices times quantities)
    live = story.catalog.read(spark, "gold.dm_sales_live").toPandas()
    mine = mine.assign(minute=[NOW - timedelta(minutes=int(k)) for k in mine.order_id - top],
                       revenue=mine.qty * mine.item_price)
    want_live = mine.groupby("minute").agg(orders=("order_id", "nunique"), units=("qty", "sum"),
                                           revenue=("revenue", "sum")).reset_index()
    got_live = live[live.minute.isin(want_live.minute)].sort_values("minute").reset_index(drop=True)
    assert got_live.minute.tolist() == sorted(want_live.minute.tolist())
    assert got_live.orders.tolist() == want_live.sort_values("minute").orders.tolist()
    assert got_live.units.tolist() == want_live.sort_values("minute").units.tolist()
    assert [int(v) for v in got_live.revenue] == [int(v) for v in want_live.sort_values("minute").revenue]


def _insert_orders(story, first: int, n: int) -> None:
    with psycopg.connect(story.db_url, autocommit=True) as conn:
        cur = conn.cursor()
        product = cur.execute("SELECT product_id FROM products ORDER BY product_id LIMIT 1").fetchone()[0]
        for k in range(n):  # one transaction each: many small commits, as the shop makes them
            _new_order(cur, first + k, NOW - timedelta(minutes=k % 30), [(product, 1)])


def _assert_exactly_once(story, spark) -> None:
    for t in FACTS:
        ev = story.events(t)
        assert ev.groupBy("_topic", "_partition", "_offset").count().where("count > 1").count() == 0
        assert ev.count() == story.kafka_records(t)
    for t in FACTS:  # the image of the events is the table, row for row
        from apparel.cdc_events import image

        got = image(story.events(t), SOURCES[t]).drop("_batch_id")
        assertDataFrameEqual(got, spark.createDataFrame(story.frame(t), got.schema))


def test_kill_9_of_the_stream_mid_batch_loses_and_doubles_nothing(story, spark):
    """And the health check (the stream health DAG's) passes while the stream runs, and fails once it is gone."""
    from apparel.stream import StreamDown, health

    st = health(story.on, log=quiet)  # passes: running, within the lag limit (a heartbeat may be in flight)
    assert st["running"] and st["lag_messages"] is not None and st["lag_seconds"] is not None
    top = story.sql("SELECT max(order_id) FROM orders")[0][0]
    _insert_orders(story, top + 1, 60)
    pid = int((story.root / "stream" / "stream.pid").read_text())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not read_status(story.on).get("in_batch"):
        time.sleep(0.05)
    assert read_status(story.on).get("in_batch"), "no micro-batch started within 120 s"
    os.killpg(pid, signal.SIGKILL)
    _insert_orders(story, top + 61, 20)
    assert sh(*APPAREL, "stream", "status", env=story.env, check=False).returncode == 3
    with pytest.raises(StreamDown, match="not running"):
        health(story.on, log=quiet)
    sh(*APPAREL, "stream", "start", env=story.env, timeout=400)
    story.wait_caught_up()
    _assert_exactly_once(story, spark)


def test_simulated_orders_with_updates_and_deletes_reach_bronze_silver_and_the_live_mart(story, spark):
    """`apparel simulate` as a person would run it (during the test above); its report and the database are the
    expectation."""
    report = story.simulated
    assert report is not None, "the simulator did not run: the test before failed first"
    assert report["orders"] > 0 and report["updates"] > 0 and report["deletes"] > 0
    first, last = report["first_order_id"], report["last_order_id"]
    story.wait_caught_up()
    created = story.events("orders").where((F.col("op") == "c") & F.col("_key_after").between(first, last))
    assert created.count() == report["orders"]
    lines = story.catalog.read(spark, "silver.fct_order_lines").where(F.col("order_id").between(first, last))
    got = lines.agg(F.count(F.lit(1)), F.sum("qty"), F.sum("line_revenue")).collect()[0]
    assert (got[0], got[1], int(got[2])) == (report["lines"], report["units"], report["revenue"])
    db = story.frame("order_details")
    db = db[db.order_id.between(first, last)]
    assert (len(db), int(db.qty.sum()), int((db.qty * db.item_price).sum())) == \
        (report["lines"], report["units"], report["revenue"])
    # the live mart's minutes of the simulated orders: the report's per-minute figures
    live = story.catalog.read(spark, "gold.dm_sales_live").toPandas().set_index("minute")
    for m in report["per_minute"]:
        minute = pd.Timestamp(m["minute"])
        if m["lines"] == 0:
            assert minute not in live.index
            continue
        row = live.loc[minute]
        assert (int(row.orders), int(row.units), int(row.revenue)) == \
            (m["orders_with_lines"], m["units"], m["revenue"]), minute


def test_restarts_of_kafka_connect_and_of_the_broker_lose_nothing(story, spark):
    top = story.sql("SELECT max(order_id) FROM orders")[0][0]
    writer = threading.Thread(target=_insert_orders, args=(story, top + 1, 150))
    writer.start()
    time.sleep(1)
    pid = int((PROJECT_ROOT / ".services" / "connect" / "connect.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    writer.join()
    sh("bash", str(SCRIPTS / "connect.sh"), "start", env=story.env)
    sh(*APPAREL, "cdc", "register", env=story.env)
    story.wait_caught_up()
    sh("bash", str(SCRIPTS / "kafka.sh"), "stop", env=story.env)
    sh("bash", str(SCRIPTS / "kafka.sh"), "start", env=story.env)
    _insert_orders(story, top + 151, 20)
    story.wait_caught_up()
    _assert_exactly_once(story, spark)


def test_every_table_equals_a_full_batch_rebuild_of_the_final_database(story, spark):
    """The reconciliation: A (batch runs and the stream) against B (CDC off, one full JDBC run)."""
    run_layers(spark, story.on, ["bronze", "silver", "gold"], log=quiet, run_date=RUN_DATE)  # the monthly marts
    b = load_settings(env="ci", environ={**project_env(story.root / "b", story.db_url), "APPAREL_LIVE_NOW":
                                         NOW.isoformat()})
    shutil.copytree(story.root / "a" / "landing", story.root / "b" / "landing")  # the same workbooks
    run_layers(spark, b, ["bronze", "silver", "gold"], log=quiet, run_date=RUN_DATE)
    cb = Catalog(b)
    compared = sorted(n for n in TABLES if n.split(".")[0] in ("silver", "quarantine", "gold"))
    assert "gold.dm_sales_live" in compared
    for name in compared:
        got, want = story.catalog.read(spark, name), cb.read(spark, name)
        if name.startswith("quarantine."):  # lineage differs: JDBC batches against stream batches
            got, want = got.drop("_batch_id"), want.drop("_batch_id")
        assertDataFrameEqual(got, want)


def test_dropping_the_capture_leaves_no_replication_slot(story):
    sh(*APPAREL, "stream", "stop", env=story.env)
    assert sh(*APPAREL, "stream", "status", env=story.env, check=False).returncode == 3  # stopped: not running
    sh(*APPAREL, "cdc", "drop", env=story.env)
    assert story.sql("SELECT slot_name FROM pg_replication_slots WHERE slot_name = %s", (story.on.cdc.slot,)) == []
