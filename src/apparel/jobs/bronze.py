"""Bronze ingest: the 7 source tables landed as Delta tables at ``<lakehouse>/bronze/<table>``.

Inputs: the store database (customers, products, product_categories, orders, order_details) read by
Spark JDBC, and the operations workbooks (provinces, cities) read from the landing area with pandas.

Outputs and grain:
- ``bronze.orders``, ``bronze.order_details``: one row per source row per extraction. Incremental: each
  run appends only the rows whose key is above the high-water mark already in bronze (``order_id`` for
  orders; ``(order_id, order_detail_id)`` in that order for order lines, because the store reuses line
  ids across orders). Rows with a null key have no place in that order: each one is landed once,
  by comparing it with the null-key rows already in bronze.
- the five master tables: one row per source row of the latest snapshot. Each run replaces the table
  in one Delta overwrite commit; earlier snapshots stay readable through Delta time travel.
- ``ops.ingest_runs``: one row per table per batch, with the rows the source held for the extraction
  and the rows the Delta commit wrote. They must be equal, or the run fails.

Columns are the source's, typed by :mod:`apparel.schemas`, plus ``_ingested_at``, ``_source`` and
``_batch_id``. Bronze never drops or edits a row: cleaning is silver's job.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from apparel.catalog import Catalog, run_parallel
from apparel.config import Settings
from apparel.errors import AccountingError
from apparel.objectstore import landing_file
from apparel.runtime import new_batch_id, run_job
from apparel.schemas import EXCEL_TABLES, STORE_TABLES, SourceTable
from apparel.sources import frame_rows, read_workbook
from apparel.store import StoreDB

GROUPS = {"store": STORE_TABLES, "excel": EXCEL_TABLES}


# --- pure transformations ---------------------------------------------------------------------------

def with_metadata(df, source: str, batch_id: str, ingested_at: datetime):
    """Append bronze's lineage columns to a source DataFrame."""
    from pyspark.sql import functions as F

    return (df.withColumn("_ingested_at", F.lit(ingested_at).cast("timestamp"))
              .withColumn("_source", F.lit(source))
              .withColumn("_batch_id", F.lit(batch_id)))


def above_watermark_sql(key: tuple[str, ...], hwm: tuple[int, ...] | None) -> str:
    """SQL predicate selecting rows whose non-null key tuple sorts after ``hwm`` (lexicographically)."""
    not_null = " AND ".join(f"{k} IS NOT NULL" for k in key)
    if hwm is None:
        return not_null
    terms = []
    for i, col in enumerate(key):
        eq = [f"{key[j]} = {int(hwm[j])}" for j in range(i)]
        terms.append("(" + " AND ".join(eq + [f"{col} > {int(hwm[i])}"]) + ")")
    return f"{not_null} AND ({' OR '.join(terms)})"


def null_key_sql(key: tuple[str, ...]) -> str:
    return " OR ".join(f"{k} IS NULL" for k in key)


def new_rows_only(candidates, landed, columns: list[str]):
    """Rows of ``candidates`` not yet in ``landed``, comparing equal rows (null-safe, on ``columns``) by
    multiplicity: with two identical rows landed, a third identical candidate is new."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def numbered(df):
        return df.select(*columns).withColumn("_copy", F.row_number().over(
            Window.partitionBy(*columns).orderBy(*columns)))

    cand, land = numbered(candidates), numbered(landed)
    cond = [cand[c].eqNullSafe(land[c]) for c in columns] + [cand["_copy"] == land["_copy"]]
    return cand.join(land, cond, "left_anti").drop("_copy")


# --- the job ----------------------------------------------------------------------------------------

@dataclass
class IngestResult:
    batch_id: str
    table: str
    mode: str                 # snapshot | incremental
    source: str
    source_rows: int          # rows the source held for this extraction
    rows_written: int         # rows the Delta commit wrote
    delta_version: int | None
    watermark_before: str | None
    watermark_after: str | None
    seconds: float


def _watermark_text(key: tuple[int, ...] | None) -> str | None:
    return None if key is None else ",".join(str(v) for v in key)


class BronzeIngest:
    def __init__(self, spark, settings: Settings, log=print, batch_id: str | None = None,
                 now: datetime | None = None):
        self.spark = spark
        self.settings = settings
        self.catalog = Catalog(settings)
        self.store = StoreDB(settings.store_db)
        self.log = log
        self.now = now or datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
        self.batch_id = batch_id or new_batch_id(self.now)

    # extraction ---------------------------------------------------------------------------------

    def _jdbc(self, table: SourceTable, where: str | None = None, bounds: tuple[int, int] | None = None):
        query = f"SELECT {', '.join(table.column_names)} FROM {table.name}" + (f" WHERE {where}" if where else "")
        reader = (self.spark.read.format("jdbc").options(**self.store.jdbc_options())
                  .option("dbtable", f"({query}) src")
                  .option("customSchema", table.spark_ddl())
                  .option("fetchsize", str(self.settings.jdbc.get("fetch_size", 10000))))
        parts = int(self.settings.jdbc.get("num_partitions", 4))
        if bounds and parts > 1 and bounds[1] > bounds[0]:
            reader = (reader.option("partitionColumn", table.key[0]).option("lowerBound", str(bounds[0]))
                      .option("upperBound", str(bounds[1] + 1)).option("numPartitions", str(parts)))
        # cast to the schema's types: drops the JDBC driver's char/varchar length metadata, which Delta
        # would otherwise enforce (SQLite reports TEXT as VARCHAR(0))
        df = reader.load()
        return df.select(*[df[c.name].cast(c.spark_type).alias(c.name) for c in table.columns])

    def _watermark(self, table: SourceTable) -> tuple[int, ...] | None:
        name = f"bronze.{table.name}"
        if not self.catalog.exists(self.spark, name):
            return None
        keyed = self.catalog.read(self.spark, name).where(above_watermark_sql(table.key, None))
        row = keyed.orderBy(*[keyed[k].desc() for k in table.key]).select(*table.key).limit(1).collect()
        return tuple(int(v) for v in row[0]) if row else None

    def extract_incremental(self, table: SourceTable):
        """New keyed rows above the watermark, plus null-key rows not yet landed.

        Returns (DataFrame or None, rows expected, watermark before, watermark after)."""
        before = self._watermark(table)
        where = above_watermark_sql(table.key, before)
        lo, hi, n_keyed = self.store.query(
            f"SELECT min({table.key[0]}), max({table.key[0]}), count(*) FROM {table.name} WHERE {where}")[0]
        frames, expected, after = [], int(n_keyed), before
        if n_keyed:
            # cap the extraction at what was counted, so rows arriving meanwhile wait for the next run
            where = f"{where} AND {table.key[0]} <= {int(hi)}"
            frames.append(self._jdbc(table, where, (int(lo), int(hi))))
            keys = ", ".join(table.key)
            order = ", ".join(f"{k} DESC" for k in table.key)
            after = tuple(int(v) for v in self.store.query(
                f"SELECT {keys} FROM {table.name} WHERE {where} ORDER BY {order} LIMIT 1")[0])
        nulls, n_new = self._new_null_key_rows(table)
        if n_new:
            frames.append(nulls)
            expected += n_new
        df = None
        for f in frames:
            df = f if df is None else df.unionByName(f)
        return df, expected, _watermark_text(before), _watermark_text(after)

    def _new_null_key_rows(self, table: SourceTable):
        """Source rows with a null key that bronze does not hold yet (they have no watermark position)."""
        n_null = self.store.query(f"SELECT count(*) FROM {table.name} WHERE {null_key_sql(table.key)}")[0][0]
        if not n_null:
            return None, 0
        nulls = self._jdbc(table, null_key_sql(table.key))
        name = f"bronze.{table.name}"
        if self.catalog.exists(self.spark, name):
            landed = self.catalog.read(self.spark, name).where(null_key_sql(table.key))
            nulls = new_rows_only(nulls, landed, table.column_names)
        nulls = nulls.localCheckpoint()
        n_new = nulls.count()  # the new null-key rows are what the source holds for this extraction
        if n_null - n_new:
            self.log(f"  {table.name}: {n_null - n_new} null-key row(s) already landed earlier")
        return nulls, n_new

    def read_excel(self, table: SourceTable):
        spec = self.settings.workbooks[table.name]
        with landing_file(self.settings, spec["file"]) as path:
            result = read_workbook(path, spec["sheet"], table)
        for w in result.warnings:
            self.log(f"  warning: {w}")
        df = self.spark.createDataFrame(frame_rows(result.frame), table.spark_ddl())
        return df, len(result.frame), f"excel:{result.origin}"

    # landing ------------------------------------------------------------------------------------

    def _land(self, table: SourceTable, df, expected: int, source: str, mode: str,
              before: str | None, after: str | None, started: float) -> IngestResult:
        """Check the extraction against the source's count, then commit it: nothing is written for a table
        whose rows do not add up."""
        name = f"bronze.{table.name}"
        extracted = 0
        if df is not None:
            df = df.localCheckpoint()  # one read of the source, counted and written as the same rows
            extracted = df.count()
        if extracted != expected:
            raise AccountingError(
                f"bronze.{table.name}: the source held {expected} row(s) for this extraction but {extracted} were "
                "read (did the source change during the run?); nothing was written for this table: re-run")
        version, written = None, 0
        if mode == "snapshot" or expected > 0:
            land = self.catalog.overwrite if mode == "snapshot" else self.catalog.append
            commit = land(with_metadata(df, source, self.batch_id, self.now), name)
            version, written = commit["version"], commit["rows"]
        if written != expected:
            raise AccountingError(f"bronze.{table.name}: {expected} row(s) extracted but the Delta commit "
                                  f"(version {version}) wrote {written}")
        return IngestResult(self.batch_id, table.name, mode, source, expected, written, version,
                            before, after, round(time.monotonic() - started, 2))

    def land_table(self, table: SourceTable, excel=None) -> IngestResult:
        """Extract one table and land it in its own Delta commit."""
        started = time.monotonic()
        if table.origin == "excel":
            df, expected, source = excel
            res = self._land(table, df, expected, source, "snapshot", None, None, started)
        elif table.incremental:
            df, expected, before, after = self.extract_incremental(table)
            res = self._land(table, df, expected, f"store_db.{table.name}", "incremental", before, after, started)
        else:
            expected = self.store.count(table.name)
            res = self._land(table, self._jdbc(table), expected, f"store_db.{table.name}", "snapshot",
                             None, None, started)
        what = "rows (snapshot)" if res.mode == "snapshot" else "new rows"
        hwm = (f", watermark {res.watermark_before or '-'} -> {res.watermark_after or '-'}"
               if res.mode == "incremental" else "")
        self.log(f"  {table.name:<19} {res.rows_written:>9,} {what}{hwm} ({res.seconds:.1f}s)")
        return res

    def run(self, groups: list[str] | None = None) -> list[IngestResult]:
        groups = groups or list(GROUPS)
        tables = [t for g in groups for t in GROUPS[g]]
        self.log(f"[bronze] batch {self.batch_id}: {', '.join(t.name for t in tables)}")
        # read every workbook before writing anything: a bad workbook fails the run up front
        excel = {t.name: self.read_excel(t) for t in tables if t.origin == "excel"}
        landed = run_parallel({t.name: (lambda t=t: self.land_table(t, excel.get(t.name))) for t in tables},
                              int(self.settings.spark.get("write_threads", 4)))
        results = [landed[t.name] for t in tables]
        self.record(results)
        return results

    def record(self, results: list[IngestResult]) -> None:
        from pyspark.sql import Row

        rows = [Row(**asdict(r), ingested_at=self.now) for r in results]
        schema = ("batch_id STRING, table STRING, mode STRING, source STRING, source_rows BIGINT, "
                  "rows_written BIGINT, delta_version BIGINT, watermark_before STRING, watermark_after STRING, "
                  "seconds DOUBLE, ingested_at TIMESTAMP")
        self.catalog.append(self.spark.createDataFrame(rows, schema), "ops.ingest_runs")


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``bronze_ingest.py [--group store|excel] [--env ENV] [--run-date D]``."""
    parser = argparse.ArgumentParser(prog="bronze_ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", choices=sorted(GROUPS),
                        help="source group(s) to ingest (default: all)")
    parser.add_argument("--env", default=None)
    parser.add_argument("--run-date", default=None,
                        help="logical date (YYYY-MM-DD); accepted like every job's, bronze does not depend on it")
    args = parser.parse_args(argv)
    return run_job(lambda spark, settings: BronzeIngest(spark, settings).run(args.group), env=args.env,
                   app_name="apparel-bronze")


if __name__ == "__main__":
    sys.exit(main())
