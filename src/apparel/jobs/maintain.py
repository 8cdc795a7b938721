"""Maintenance: OPTIMIZE, then VACUUM, over every catalogued lakehouse table that exists.

Inputs and outputs: the Delta tables of :data:`apparel.catalog.TABLES` under the lakehouse (bronze, silver,
gold, quarantine, ops). No row changes:

- OPTIMIZE compacts each table's small files (per partition) into fewer, larger ones in one commit marked
  ``dataChange=false``: readers see the same rows, and a table with at most one file per partition is left
  alone (no commit).
- VACUUM deletes the files that no version younger than the retention needs (``maintenance.retention_hours``,
  ``APPAREL_MAINTENANCE_RETENTION_HOURS``, default 168 h): time travel works within the retention, not
  beyond it. It writes no commit (Delta's VACUUM START/END entries are switched off for the job), so a
  table's version changes only when OPTIMIZE compacts it. Delta refuses less than 168 h unless the Spark session sets
  ``spark.databricks.delta.retentionDurationCheck.enabled=false`` (tests only: a shorter retention can delete
  files that a running query still reads). The job checks that before it touches any table.

Each table prints one progress line: its files in the current version before and after OPTIMIZE, the data
files on storage before and after VACUUM, and the seconds it took. A table that fails does not stop the
others; the job then fails naming it (a retry redoes only what is left: compacted tables are no-ops).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from apparel.catalog import TABLES, Catalog, run_parallel
from apparel.config import Settings
from apparel.errors import ConfigError, MaintenanceError
from apparel.locks import lakehouse_lock
from apparel.runtime import hours, one_line_error, run_job
from apparel.spark import jvm_class

DELTA_MIN_RETENTION_HOURS = 168
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
# VACUUM lists a table's files in a Spark job of this many tasks; Spark's default is 10,000, which on a few cores
# makes VACUUM of a small table take minutes. The job uses the session's default parallelism (its cores)
# unless the settings name a value (spark.conf).
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
# Delta records each VACUUM as two commits (VACUUM START, VACUUM END) on local storage: two new versions of every
# table each week that change nothing. Off, unless the settings name a value: maintenance then adds a version
# only where OPTIMIZE compacts, so "a new Delta version" keeps meaning "something was written".
VACUUM_LOGGING = "spark.databricks.delta.vacuum.logging.enabled"


@dataclass
class MaintainResult:
    table: str
    files_before: int         # data files of the current version (DESCRIBE DETAIL numFiles)
    files_after: int
    stored_before: int        # data files on storage, every version's (what VACUUM deletes from)
    stored_after: int
    seconds: float


def check_retention(spark, hours: int) -> None:
    """Fail with one line, before any table is touched, when Delta would refuse the retention."""
    if hours >= DELTA_MIN_RETENTION_HOURS:
        return
    if str(spark.conf.get(RETENTION_CHECK, "true")).strip().lower() == "false":
        return
    raise ConfigError(
        f"maintenance retention {hours} h is below Delta's minimum of {DELTA_MIN_RETENTION_HOURS} h: VACUUM "
        "would delete files that time travel and running queries may still need. Use 168 or more "
        "(APPAREL_MAINTENANCE_RETENTION_HOURS, --retention-hours); a shorter one is for tests only, in a "
        f"session with {RETENTION_CHECK}=false")


@contextmanager
def session_conf(spark, values: dict[str, str]) -> Iterator[None]:
    """Set SQL settings of the running session for a block, then put the previous values back."""
    before = {k: spark.conf.get(k, None) for k in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def stored_files(spark, path: str) -> int:
    """Data files under a table's folder on storage (local or s3a://), the Delta log excluded: Parquet files and
    deletion vectors (``deletion_vector_*.bin``), what VACUUM deletes."""
    root = jvm_class(spark, "org.apache.hadoop.fs.Path")(path)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(root):
        return 0
    files, n = fs.listFiles(root, True), 0
    while files.hasNext():
        name = files.next().getPath().toString()
        base = name.rsplit("/", 1)[-1]
        if "/_delta_log/" not in name and (base.endswith(".parquet")
                                           or base.startswith("deletion_vector_") and base.endswith(".bin")):
            n += 1
    return n


class Maintenance:
    def __init__(self, spark, settings: Settings, log=print, retention_hours: int | None = None):
        self.spark = spark
        self.settings = settings
        self.catalog = Catalog(settings)
        self.log = log
        self.retention_hours = (settings.maintenance.retention_hours if retention_hours is None
                                else int(retention_hours))

    def _files(self, name: str) -> int:
        from delta.tables import DeltaTable

        return int(DeltaTable.forPath(self.spark, self.catalog.path(name)).detail().collect()[0]["numFiles"])

    def maintain_table(self, name: str) -> MaintainResult:
        from delta.tables import DeltaTable

        started = time.monotonic()
        path = self.catalog.path(name)
        table = DeltaTable.forPath(self.spark, path)
        before = self._files(name)
        if before > 1:
            table.optimize().executeCompaction()
        after = self._files(name)
        stored_before = stored_after = stored_files(self.spark, path)
        # VACUUM deletes stored files that the versions within the retention do not need. Every file of the current
        # version is on storage (else the table would not read), so when storage holds no more data files than
        # that version has, they are the same files and VACUUM has nothing to delete: a table written once, or
        # only appended to, is left alone (VACUUM lists the folder and joins it with the Delta log in Spark jobs).
        vacuum = stored_before > after
        if vacuum:
            table.vacuum(float(self.retention_hours))
            stored_after = stored_files(self.spark, path)
        res = MaintainResult(name, before, after, stored_before, stored_after, round(time.monotonic() - started, 2))
        self.log(f"  {name:<36} files {res.files_before:>4} -> {res.files_after:<4} on storage "
                 f"{res.stored_before:>5} -> {res.stored_after:<5} ({res.seconds:.1f}s)"
                 + ("" if vacuum else "  nothing to vacuum"))
        return res

    def run(self, tables: list[str] | None = None) -> list[MaintainResult]:
        with lakehouse_lock(self.settings, self.log, "maintain"):
            return self._run(tables)

    def _run(self, tables: list[str] | None = None) -> list[MaintainResult]:
        check_retention(self.spark, self.retention_hours)
        names = [n for n in (tables or sorted(TABLES)) if self.catalog.exists(self.spark, n)]
        started = time.monotonic()
        self.log(f"[maintain] OPTIMIZE and VACUUM (retention {self.retention_hours} h) over {len(names)} table(s) "
                 f"in {self.catalog.root}")

        def attempt(name: str):
            try:
                return self.maintain_table(name)
            except Exception as exc:  # noqa: BLE001 - one table's failure must not skip the others
                self.log(f"  {name:<36} failed: {one_line_error(exc)}")
                return exc

        defaults = {LISTING_PARALLELISM: str(max(1, self.spark.sparkContext.defaultParallelism)),
                    VACUUM_LOGGING: "false"}
        conf = {k: v for k, v in defaults.items() if k not in (self.settings.spark.get("conf") or {})}
        with session_conf(self.spark, conf):
            outcome = run_parallel({n: (lambda n=n: attempt(n)) for n in names},
                                   int(self.settings.spark.get("write_threads", 4)))
        results = [r for r in outcome.values() if isinstance(r, MaintainResult)]
        failed = {n: r for n, r in outcome.items() if not isinstance(r, MaintainResult)}
        self.log(f"[maintain] {len(results)} table(s): files {sum(r.files_before for r in results):,} -> "
                 f"{sum(r.files_after for r in results):,} in the current versions, "
                 f"{sum(r.stored_before for r in results):,} -> {sum(r.stored_after for r in results):,} on storage "
                 f"({time.monotonic() - started:.1f}s)")
        if failed:
            first = next(iter(failed))
            raise MaintenanceError(f"maintenance failed for {len(failed)} table(s): {', '.join(failed)} "
                                   f"({first}: {one_line_error(failed[first])})")
        return results


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``maintain.py [--retention-hours H] [--env ENV] [--run-date D]``."""
    parser = argparse.ArgumentParser(prog="maintain", description=__doc__.splitlines()[0])
    parser.add_argument("--retention-hours", type=hours, default=None,
                        help="VACUUM retention in hours (default: maintenance.retention_hours, 168)")
    parser.add_argument("--env", default=None)
    parser.add_argument("--run-date", default=None,
                        help="logical date (YYYY-MM-DD); accepted like every job's, maintenance does not depend on it")
    args = parser.parse_args(argv)
    return run_job(lambda spark, settings: Maintenance(spark, settings, retention_hours=args.retention_hours).run(),
                   env=args.env, app_name="apparel-maintain")


if __name__ == "__main__":
    sys.exit(main())
