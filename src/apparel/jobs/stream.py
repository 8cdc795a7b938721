"""The stream: Kafka change events -> ``bronze.cdc_<table>`` -> ``gold.dm_sales_live`` at once, and silver behind.

A Spark Structured Streaming query reads the connector's topics (one per store table, plus Debezium's
heartbeats) with ``read_committed`` (Kafka Connect writes them in transactions) and, per micro-batch (the fast
lane, a few seconds):

1. appends each table's events to ``bronze.cdc_<table>`` (:mod:`apparel.cdc_events`), idempotently: each
   append carries the query's id and the batch id (Delta ``txnAppId``/``txnVersion``), so a batch replayed
   after a crash lands nothing twice;
2. when orders or order lines changed, refreshes ``gold.dm_sales_live`` for the minutes they touch: silver's
   fact lines with the orders whose events silver has not applied yet judged by the contract now
   (:mod:`apparel.jobs.live`), under the live mart's lock. The first such batch computes that from silver and
   the change data feed and loads the lane's state (:class:`apparel.jobs.live.LiveLane`); the next ones judge
   only their own orders;
3. accounts for the batch (Kafka records = events landed + heartbeats) in ``ops.stream_batches``, in a thread
   of its own while the next micro-batch starts (:meth:`Stream._record`).

Silver follows in a thread of its own (:meth:`Stream._follow`): whenever events landed, it runs silver
incrementally (:class:`apparel.jobs.silver.SilverBuild`) over the events since its last run (the same contract,
the same MERGEs as the batch, so an update or a delete changes ``fct_order_lines`` and a row that breaks the
contract goes to quarantine with its reason); on its first run and when the day changed it also refreshes the live
mart's whole window (minutes that left it are deleted). It holds the lakehouse's writer lock
(:mod:`apparel.locks`) meanwhile; the fast lane does not wait for it. Since the overlay is judged by silver's
rules, the live figures do not move when silver catches up. A silver run that fails stops the stream (its error in
the log); the next start catches up.

The monthly marts are left to the next batch run: the stream's silver runs are in ``ops.silver_runs`` with their
touched months, which gold reads. Master tables' events are landed but not applied: their dimensions are SCD2
snapshots of the batch run.

The progress, with the seconds each step took, is written to ``<stream.state_dir>/status.json`` for ``apparel
stream status`` (``silver_upto``: the last micro-batch silver has applied). The query restarts where its
checkpoint (``stream.checkpoint``) says it stopped.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from apparel.catalog import Catalog, run_parallel
from apparel.cdc import heartbeat_topic, topics
from apparel.cdc_events import event_type, parse
from apparel.config import PROJECT_ROOT, Settings
from apparel.errors import AccountingError
from apparel.gold import live_window_start
from apparel.jobs.gold import refresh_live
from apparel.jobs.live import LiveLane, consumed_versions, pending
from apparel.locks import lakehouse_lock
from apparel.runtime import Steps
from apparel.schemas import STORE_TABLES
from apparel.spark import local_frame

FACT_TABLES = ("orders", "order_details")
BATCHES_SCHEMA = ("batch_id BIGINT, landed_batch STRING, started_at TIMESTAMP, finished_at TIMESTAMP, "
                  "records BIGINT, events MAP<STRING, BIGINT>, heartbeats BIGINT, malformed BIGINT, "
                  "newest_commit_ts TIMESTAMP")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def state_dir(settings: Settings) -> Path:
    return Path(settings.stream.state_dir)


_status_lock = threading.Lock()  # the query's thread and silver's both write the status


def write_status(settings: Settings, **fields) -> dict:
    """Merge ``fields`` into status.json, atomically (a reader never sees half a file)."""
    path = state_dir(settings) / "status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with _status_lock:
        status = read_status(settings)
        status.update(fields)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, default=str, indent=1))
        os.replace(tmp, path)
    return status


def read_status(settings: Settings) -> dict:
    path = state_dir(settings) / "status.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def silver_caught_up(status: dict) -> bool:
    """Whether silver has applied every micro-batch that landed order or order-line events (``status``: what
    :func:`read_status` returns)."""
    facts, upto = status.get("facts_batch"), status.get("silver_upto")
    return not status.get("silver_running") and (facts is None or (upto is not None and upto >= facts))


class Stream:
    def __init__(self, spark, settings: Settings, log=print):
        self.spark = spark
        self.settings = settings
        self.catalog = Catalog(settings, log=log)
        self.log = log
        self.topics = {settings.cdc.topic(t.name): t for t in STORE_TABLES}
        self.query = None
        self.query_id: str | None = None
        self.started = threading.Event()
        self.stopping = False
        # silver's thread: woken when fact events landed; the last micro-batch they came in; its failure
        self.wake = threading.Event()
        self.landed_upto: int | None = None
        self.silver_runs = 0
        self.silver_error: BaseException | None = None
        self.follower: threading.Thread | None = None
        self.consumed: dict[str, int] = {}  # the events' versions silver has applied (apparel.jobs.live)
        self.live_window = None  # the live mart's window at its last whole refresh by this process
        self.lane: LiveLane | None = None  # the fast lane's state (loaded by the first micro-batch with facts)
        self.recording: threading.Thread | None = None  # the last micro-batch's row for ops.stream_batches
        self.record_error: BaseException | None = None

    def ensure_tables(self) -> None:
        """Create the events tables (with Delta's change data feed, which silver reads) and
        ``ops.stream_batches`` before the first batch."""
        from delta.tables import DeltaTable

        for t in STORE_TABLES:
            (DeltaTable.createIfNotExists(self.spark).location(self.catalog.path(f"bronze.cdc_{t.name}"))
             .addColumns(event_type(t)).property("delta.enableChangeDataFeed", "true").execute())
        (DeltaTable.createIfNotExists(self.spark).location(self.catalog.path("ops.stream_batches"))
         .addColumns(local_frame(self.spark, [], BATCHES_SCHEMA).schema).execute())

    def start(self):
        cdc, stream = self.settings.cdc, self.settings.stream
        self.ensure_tables()
        self._record_leftover()
        self.consumed = consumed_versions(self.spark, self.catalog)
        self.landed_upto = read_status(self.settings).get("facts_batch")
        # a fresh start also catches up with events an earlier process landed but did not apply
        if not self.catalog.is_empty(self.spark, "bronze.cdc_orders"):
            self.wake.set()
        self.follower = threading.Thread(target=self._follow, name="apparel-silver", daemon=True)
        self.follower.start()
        reader = (self.spark.readStream.format("kafka")
                  .option("kafka.bootstrap.servers", cdc.kafka_bootstrap)
                  .option("subscribe", ",".join(topics(self.settings)))
                  .option("startingOffsets", "earliest")
                  .option("kafka.isolation.level", "read_committed")
                  .option("failOnDataLoss", "true")
                  .option("maxOffsetsPerTrigger", stream.max_offsets_per_trigger))
        self.query = (reader.load().writeStream.foreachBatch(self.process)
                      .option("checkpointLocation", stream.checkpoint)
                      .trigger(processingTime=stream.trigger)
                      .queryName(f"apparel-cdc-{cdc.topic_prefix}")
                      .start())
        self.query_id = str(self.query.id)
        self.started.set()
        write_status(self.settings, query_id=self.query_id, pid=os.getpid(), started_at=utcnow(), running=True,
                     checkpoint=stream.checkpoint, trigger=stream.trigger, in_batch=False, silver_error=None)
        self.log(f"[stream] query {self.query_id} started: topics {cdc.topic_prefix}.public.*, trigger "
                 f"{stream.trigger}, checkpoint {stream.checkpoint}")
        return self.query

    def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT (then stop the query cleanly) or until the query fails (then raise)."""
        def stop(signum, frame):
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        query = self.start()
        try:
            while query.isActive and not self.stopping and self.silver_error is None:
                query.awaitTermination(1)
        finally:
            if query.isActive:
                self.log("[stream] stopping")
                query.stop()
            self.stopping = True
            if self.recording is not None:
                self.recording.join(60)
            if self.follower is not None:  # a silver run under way finishes (or the stop's timeout kills it)
                self.wake.set()
                self.follower.join(75)
            write_status(self.settings, running=False, stopped_at=utcnow(), in_batch=False, silver_running=False)
        if query.exception() is not None:
            raise RuntimeError(f"the streaming query failed: {query.exception()}")
        if self.silver_error is not None:
            raise RuntimeError(f"silver failed: {self.silver_error}") from self.silver_error
        self.log("[stream] stopped")

    # one micro-batch ------------------------------------------------------------------------------------

    def process(self, records, batch_id: int) -> None:
        from pyspark.sql import functions as F

        self.started.wait(60)
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", "live")
        self._recorded()
        started = utcnow()
        write_status(self.settings, in_batch=True, batch_started_at=started, current_batch=batch_id)
        landed = f"cdc-{batch_id:010d}-{self.query_id[:8]}"
        app_id = f"apparel-cdc-{self.query_id}"
        records = records.persist()
        steps = Steps()
        try:
            per_topic = {r["topic"]: (int(r["n"]), r["ts"]) for r in records.groupBy("topic").agg(
                F.count(F.lit(1)).alias("n"), F.max("timestamp").alias("ts")).collect()}
            total = sum(n for n, _ in per_topic.values())
            heartbeat = per_topic.get(heartbeat_topic(self.settings))
            steps.lap("read")
            events = {}
            for topic, table in self.topics.items():
                if topic in per_topic:
                    events[table.name] = parse(records.where(F.col("topic") == topic), table, landed, started)
            appended = run_parallel({name: (lambda name=name: self._append(events[name], f"bronze.cdc_{name}",
                                                                           app_id, batch_id))
                                     for name in events}, 4)
            counts = {name: c["rows"] for name, c in appended.items()}
            steps.lap("land")
            malformed, newest = 0, None
            if events:
                stats = local_frame(self.spark, [], "n BIGINT, ts TIMESTAMP")
                for df in events.values():
                    stats = stats.unionByName(df.select(F.col("op").isNull().cast("long").alias("n"),
                                                        F.col("_commit_ts").alias("ts")))
                row = stats.agg(F.sum("n"), F.max("ts")).collect()[0]
                malformed, newest = int(row[0] or 0), row[1]
            hb = heartbeat[0] if heartbeat else 0
            if sum(counts.values()) + hb != total:
                raise AccountingError(f"stream batch {batch_id}: {total} Kafka records but {sum(counts.values())} "
                                      f"events landed ({counts}) + {hb} heartbeats")
            steps.lap("account")
            if any(t in events for t in FACT_TABLES):
                self._live(steps, {t: appended[t]["version"] for t in FACT_TABLES if t in appended},
                           {t: events[t] for t in FACT_TABLES if t in events})
                self.landed_upto = batch_id
                self.wake.set()
            if events:  # recorded while the next micro-batch starts (see _record)
                row = [batch_id, landed, started, utcnow(), total, counts, hb, malformed, newest]
                write_status(self.settings, unrecorded={"app_id": app_id, "row": row})
                self.recording = threading.Thread(target=self._record, args=(app_id, row), daemon=True,
                                                  name=f"apparel-record-{batch_id}")
                self.recording.start()
            steps.lap("record")
            status = {"in_batch": False, "batch_id": batch_id, "finished_at": utcnow(), "alive_at": utcnow(),
                      "batch_seconds": round((utcnow() - started).total_seconds(), 2)}
            if events:
                status.update(last_events=counts, last_events_batch=batch_id, last_malformed=malformed,
                              last_seconds=steps.rounded())
            if any(t in events for t in FACT_TABLES):
                status["facts_batch"] = batch_id
            else:  # a batch with nothing to apply: the floor of a micro-batch (bench/stream_bench.py)
                idle = read_status(self.settings).get("idle_batch_seconds", [])
                status["idle_batch_seconds"] = (idle + [status["batch_seconds"]])[-200:]
            if newest is not None:
                status["newest_commit_ts"] = newest
            if heartbeat:
                status["heartbeat_ts"] = heartbeat[1]
            write_status(self.settings, **status)
            if events:
                self.log(f"[stream] batch {batch_id}: {total} record(s): "
                         + ", ".join(f"{k} {v}" for k, v in counts.items())
                         + (f", heartbeats {hb}" if hb else "") + (f", MALFORMED {malformed}" if malformed else "")
                         + f" ({status['batch_seconds']} s: "
                         + ", ".join(f"{k} {v}" for k, v in steps.rounded().items()) + ")")
        finally:
            records.unpersist()

    def _append(self, df, name: str, app_id: str, batch_id: int, commit: bool = True) -> dict | None:
        """Append as part of micro-batch ``batch_id``: Delta skips it if this query already wrote that batch.
        Returns that batch's commit (``rows``: what it wrote), found by its tag even when the append was a
        replay after a crash and other commits (an OPTIMIZE of ``apparel maintain``) came after it; with
        ``commit`` false, nothing (no look-up)."""
        tag = f"{app_id}-{name}:{batch_id}"
        (df.write.format("delta").mode("append").option("txnAppId", f"{app_id}-{name}")
         .option("txnVersion", batch_id).option("userMetadata", tag).save(self.catalog.path(name)))
        if not commit:
            return None
        found = self.catalog.tagged_commit(self.spark, name, tag, within=20)
        if found is None:
            raise AccountingError(f"{name}: no commit of stream batch {batch_id} among its last 20 versions")
        return found

    def _record(self, app_id: str, row: list) -> None:
        """Append a micro-batch's row to ``ops.stream_batches`` (in a thread of its own: the next micro-batch
        does not wait for it, the one after does). The row is in status.json (``unrecorded``) until then: a
        process killed meanwhile leaves it there, and the next start appends it (a no-op if it was written)."""
        try:
            self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", "live")
            self._append(local_frame(self.spark, [tuple(row)], BATCHES_SCHEMA), "ops.stream_batches", app_id,
                         row[0], commit=False)
        except BaseException as exc:  # noqa: BLE001 - raised by the next micro-batch (_recorded)
            self.record_error = exc

    def _recorded(self) -> None:
        """Wait for the previous micro-batch's record; its failure fails this micro-batch."""
        if self.recording is not None:
            self.recording.join()
            self.recording = None
        if self.record_error is not None:
            error, self.record_error = self.record_error, None
            raise AccountingError(f"ops.stream_batches: the previous micro-batch's row was not written: {error}") \
                from error

    def _record_leftover(self) -> None:
        """The row a killed process left in status.json (``unrecorded``), appended again: Delta skips it if it
        was written (the same query id and batch id)."""
        left = read_status(self.settings).get("unrecorded")
        if left:
            row = list(left["row"])
            for i in (2, 3, 8):  # started_at, finished_at, newest_commit_ts (written as text)
                row[i] = datetime.fromisoformat(row[i]) if row[i] else None
            self._record(left["app_id"], row)
            self._recorded()

    def _live(self, steps: Steps, landed: dict[str, int], batch: dict) -> None:
        """The fast lane: ``gold.dm_sales_live`` for the minutes the micro-batch's orders touch (``landed``: the
        version of each table's append; ``batch``: the fact tables' parsed events). The first micro-batch of
        the process (and of a new day) computes them from silver and the events it has not applied
        (:func:`apparel.jobs.live.pending`) and loads the lane's state; the next ones judge only their own
        orders (:class:`apparel.jobs.live.LiveLane`)."""
        consumed = dict(self.consumed)
        if any(t not in consumed for t in FACT_TABLES) or not self.catalog.exists(self.spark, "gold.dm_sales_live"):
            return  # silver's first run over the captured tables (a full one) comes first, then its live refresh
        versions = {t: landed[t] if t in landed else self.catalog.version(self.spark, f"bronze.cdc_{t}")
                    for t in FACT_TABLES}
        start = live_window_start(self.settings.live_now)
        with lakehouse_lock(self.settings, self.log, "stream", part="live"):
            steps.lap("lock")
            if self.lane is not None and self.lane.start == start:
                self.lane.apply(batch, versions, steps)
                return
            ahead = pending(self.spark, self.catalog, consumed, versions)
            steps.lap("pending")
            if ahead is not None:
                refresh_live(self.spark, self.catalog, self.settings.live_now, ahead, touched_only=True)
            steps.lap("live")
            self.lane = LiveLane.load(self.spark, self.catalog, start, versions, ahead)
            steps.lap("lane")
            self.log(f"[stream] the fast lane holds {len(self.lane.orders):,} order(s) of the window from {start}")

    # silver, behind the query --------------------------------------------------------------------------

    def _follow(self) -> None:
        """Silver's thread: apply what landed whenever the query says so, until the stream stops."""
        self.spark.sparkContext.setLocalProperty("spark.scheduler.pool", "silver")
        interval, last = self.settings.stream.silver_interval, None
        while not self.stopping:
            if not self.wake.wait(1):
                continue
            # at most one run per stream.silver_interval: the live mart does not wait for silver
            while last is not None and time.monotonic() - last < interval and not self.stopping:
                time.sleep(0.5)
            self.wake.clear()
            if self.stopping:
                break
            last = time.monotonic()
            try:
                self._apply()
            except BaseException as exc:  # noqa: BLE001 - the stream stops and says why
                self.silver_error = exc
                write_status(self.settings, silver_running=False, silver_error=str(exc).splitlines()[0][:500])
                self.log(f"[stream] silver failed, stopping the stream: {exc}")
                return

    def _apply(self) -> None:
        """Silver over the events landed since its last run (and the live mart's whole window when needed),
        under the writer lock."""
        from apparel.jobs.silver import CONTRACT_ORDER, SilverBuild

        masters = [t for t in CONTRACT_ORDER if t not in FACT_TABLES]
        missing = [t for t in masters if not self.catalog.exists(self.spark, f"bronze.{t}")]
        if missing:
            self.log(f"[stream] silver waits: bronze.{missing[0]} not landed yet (run the batch once: apparel run)")
            return
        upto, started, steps = self.landed_upto, utcnow(), Steps()
        write_status(self.settings, silver_running=True, silver_started_at=started)
        every = self.settings.stream.full_check_every
        refreshed = []

        with lakehouse_lock(self.settings, self.log, "stream"):
            steps.lap("lock")
            build = SilverBuild(self.spark, self.settings, log=lambda m: None,
                                whole_table_check=self.silver_runs % every == 0)

            # the fast lane keeps the minutes the events touch; the whole window is refreshed when it moved (a
            # new day), on this process's first run, and when the fast lane could not run yet (silver's first run
            # over the captured tables)
            start = live_window_start(self.settings.live_now)
            whole = start != self.live_window or any(t not in self.consumed for t in FACT_TABLES) \
                or not self.catalog.exists(self.spark, "gold.dm_sales_live")

            def live() -> None:  # once the facts are committed, beside silver's own records
                consumed = {t: build.versions[t] for t in FACT_TABLES}
                if whole:
                    with lakehouse_lock(self.settings, self.log, "stream", part="live"):
                        ahead = pending(self.spark, self.catalog, consumed)
                        refresh_live(self.spark, self.catalog, self.settings.live_now, ahead)
                        self.live_window = start
                self.consumed = consumed
                refreshed.append(True)

            build.alongside = live
            result = build.run()
            for name, seconds in result.seconds.items():
                steps.seconds["live" if name == "alongside" else f"silver.{name}"] = seconds
            if not refreshed:  # silver had nothing to do; the window may still have moved
                live()
            steps.lap("silver+live")
        self.silver_runs += 1
        seconds = round((utcnow() - started).total_seconds(), 2)
        write_status(self.settings, silver_running=False, silver_upto=upto, silver_finished_at=utcnow(),
                     silver_seconds=seconds, silver_steps=steps.rounded(), silver_run=result.run_id
                     if result.mode != "unchanged" else None)
        if result.mode != "unchanged":
            self.log(f"[stream] silver run {result.run_id} ({result.mode}) applied the batches up to {upto}"
                     + (f": changed {', '.join(result.changed)}" if result.changed else ": nothing changed")
                     + f" ({seconds} s: " + ", ".join(f"{k} {v}" for k, v in steps.rounded().items()) + ")")


def main_loop(settings: Settings, log=print) -> int:
    from apparel.spark import get_spark

    # the fast lane's jobs take the free task slots before silver's (conf/fairscheduler.xml)
    pools = str(PROJECT_ROOT / "conf" / "fairscheduler.xml")
    spark = get_spark(settings, app_name="apparel-stream",
                      extra={"spark.scheduler.mode": "FAIR", "spark.scheduler.allocation.file": pools})
    Stream(spark, settings, log=log).run_forever()
    return 0

