"""``ops.run_log``: one row per batch run (``apparel run``, ``apparel maintain``, each spark-submit job, hence each
Airflow task), written when it starts and again when it ends, failed runs included; ``apparel status`` shows the
last ones.

:func:`batch_run` wraps a run: it takes the lakehouse's run lock (:mod:`apparel.runlock`), so the run log has one
writer at a time, and records the run. A run refused by the lock writes no row (it never started: its error
names the holder). A run that fails before its Spark session starts (a workbook that has not arrived) leaves
its row as a small JSON file, ``<lakehouse>/_apparel/runs/<run_id>.json``: starting a session only to record
it would cost each of Airflow's retries half a minute; the next run appends it to the table. A run killed before
it could record its end keeps status ``running`` until the next run starts and marks it ``abandoned``.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

from apparel.catalog import Catalog
from apparel.config import Settings
from apparel.runlock import RunLock, store
from apparel.runtime import new_batch_id, one_line_error
from apparel.spark import local_frame

RUN_LOG = "ops.run_log"
COLUMNS = [("run_id", "string"), ("trigger", "string"), ("command", "string"), ("layers", "string"),
           ("host", "string"), ("pid", "int"), ("started_at", "timestamp"), ("ended_at", "timestamp"),
           ("status", "string"), ("error", "string")]
STATUSES = ("running", "succeeded", "failed", "abandoned")
ABANDONED = "ended without recording its end (killed, or its machine stopped)"
PENDING = "runs"  # <lakehouse>/_apparel/runs/<run_id>.json: runs that failed before their Spark session


def _pending_rows(settings: Settings) -> dict[str, tuple]:
    """The recorded rows of runs that failed before Spark, not yet in the table: file name -> row."""
    rows = {}
    for name, data in store(settings).files(PENDING).items():
        r = json.loads(data)
        r["started_at"], r["ended_at"] = (datetime.fromisoformat(r[k]) for k in ("started_at", "ended_at"))
        rows[name] = tuple(r[c] for c, _ in COLUMNS)
    return rows


def _utc_naive(ts: datetime) -> datetime:
    return ts.astimezone(timezone.utc).replace(tzinfo=None)  # the session's time zone is UTC


class Run:
    """One batch run: its id, its lock, and its row of ``ops.run_log`` (written once Spark is up)."""

    def __init__(self, settings: Settings, run_id: str, trigger: str, command: str, layers: list[str],
                 lock: RunLock, log=print):
        self.settings, self.run_id, self.trigger, self.command, self.layers = settings, run_id, trigger, command, layers
        self.lock, self.log = lock, log
        self.started = datetime.now(timezone.utc)
        self.spark = None

    def begin(self, spark) -> None:
        """Record the start (once per run), after marking the runs that never recorded their end."""
        if self.spark is not None:
            return
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        self.spark = spark
        catalog = Catalog(self.settings)
        if catalog.exists(spark, RUN_LOG):
            # this run holds the lock: no other batch run is alive, so a "running" row is a dead one's
            table = DeltaTable.forPath(spark, catalog.path(RUN_LOG))
            if table.toDF().where(F.col("status") == "running").limit(1).count():
                table.update("status = 'running'", {"status": F.lit("abandoned"), "error": F.lit(ABANDONED)})
        pending = _pending_rows(self.settings)
        rows = [*pending.values(), self._row("running")]
        catalog.append(local_frame(spark, rows, ", ".join(f"{c} {t}" for c, t in COLUMNS)), RUN_LOG)
        records = store(self.settings)
        for name in pending:  # appended: the files go (a crash before this leaves them, and they come again)
            records.remove_file(name)

    def _row(self, status: str, error: str | None = None, ended: datetime | None = None) -> tuple:
        return (self.run_id, self.trigger, self.command, ",".join(self.layers), socket.gethostname(), os.getpid(),
                _utc_naive(self.started), _utc_naive(ended) if ended else None, status, error)

    def check(self) -> None:
        """Between layers: stop if the run lost its lock."""
        self.lock.check()

    def finish(self, status: str, error: str | None = None) -> None:
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        if self.spark is None:  # failed before its session started: the next run appends this record
            row = dict(zip([c for c, _ in COLUMNS], self._row(status, error, datetime.now(timezone.utc))))
            row["started_at"], row["ended_at"] = (row[k].isoformat() for k in ("started_at", "ended_at"))
            store(self.settings).put_file(f"{PENDING}/{self.run_id}.json", json.dumps(row).encode())
            return
        table = DeltaTable.forPath(self.spark, Catalog(self.settings).path(RUN_LOG))
        table.update(F.col("run_id") == self.run_id,
                     {"status": F.lit(status), "error": F.lit(error).cast("string"),
                      "ended_at": F.lit(_utc_naive(datetime.now(timezone.utc))).cast("timestamp")})


@contextmanager
def batch_run(settings: Settings, command: str, layers: list[str], trigger: str = "cli",
              log=print) -> Iterator[Run]:
    """Hold the run lock and record the run in ``ops.run_log`` (call ``run.begin(spark)`` once the session is
    up). ``APPAREL_RUN_TRIGGER`` overrides ``trigger`` (Airflow's operator sets ``airflow:<dag>/<task>``)."""
    trigger = os.environ.get("APPAREL_RUN_TRIGGER") or trigger
    run_id = new_batch_id(datetime.now(timezone.utc))
    with RunLock(settings, run_id, command, trigger, log=log) as lock:
        run = Run(settings, run_id, trigger, command, layers, lock, log=log)
        try:
            yield run
        except BaseException as exc:
            error = "interrupted" if isinstance(exc, KeyboardInterrupt) else one_line_error(exc)
            try:
                run.finish("failed", error[:1000])
            except Exception as inner:  # noqa: BLE001 - the run's own error is the one to report
                log(f"warning: could not record the failed run in {RUN_LOG}: {one_line_error(inner)}")
            raise
        run.finish("succeeded")


def last_runs(spark, settings: Settings, n: int = 10) -> list[dict]:
    """The newest ``n`` runs of ``ops.run_log``, and of the records of failed runs not appended yet, newest
    first ([] before the first run)."""
    catalog = Catalog(settings)
    names = [c for c, _ in COLUMNS]
    rows = [dict(zip(names, r)) for r in _pending_rows(settings).values()]
    if catalog.exists(spark, RUN_LOG):
        rows += [r.asDict() for r in catalog.read(spark, RUN_LOG).orderBy("started_at", ascending=False)
                 .limit(n).collect()]
    return sorted(rows, key=lambda r: r["started_at"], reverse=True)[:n]
