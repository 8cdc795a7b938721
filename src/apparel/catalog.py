"""The table catalog: logical names (``bronze.orders``, ``ops.ingest_runs``) mapped to Delta locations under
the lakehouse root, plus the small amount of Delta I/O every job shares.

Layers are folders: ``<lakehouse>/<layer>/<table>``. Writes are single Delta commits (atomic overwrite
or append), so a reader never sees a half-written table.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, TypeVar

from apparel.config import Settings
from apparel.schemas import SOURCES, STORE_TABLES

T = TypeVar("T")
LAYERS = ("bronze", "silver", "gold", "quarantine", "ops")


@dataclass(frozen=True)
class TableInfo:
    name: str       # "<layer>.<table>"
    grain: str      # one line: what one row is

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]


TABLES: dict[str, TableInfo] = {}


def register(name: str, grain: str) -> TableInfo:
    info = TableInfo(name, grain)
    if info.layer not in LAYERS:
        raise ValueError(f"unknown layer in {name!r}")
    TABLES[name] = info
    return info


for _src in SOURCES.values():
    register(f"bronze.{_src.name}", f"one row per {_src.name} source row as extracted, per batch"
             if _src.incremental else f"one row per {_src.name} source row in the latest snapshot")
for _src in STORE_TABLES:
    register(f"bronze.cdc_{_src.name}", f"one row per change event of the store's {_src.name} (Debezium, through "
             "Kafka), as the stream landed it")
register("ops.stream_batches", "one row per stream micro-batch that landed change events")
register("ops.ingest_runs", "one row per bronze table per ingest batch")
register("ops.dq_results", "one row per source table per silver run: the contract's row accounting")
register("ops.silver_batches", "one row per bronze batch (or master snapshot) a silver run consumed")
register("ops.silver_runs", "one row per silver run that changed silver: what it touched, for gold")
register("ops.run_log", "one row per batch run (apparel run, apparel maintain, each spark-submit job): trigger, "
         "start, end, status")
register("ops.gold_runs", "one row per gold run that changed gold: the silver run it caught up to")
register("silver.dim_date", "one row per calendar day covering every order date, plus the unknown day (-1)")
register("silver.dim_customer", "one row per customer version (SCD type 2), plus the unknown customer (-1)")
register("silver.dim_product", "one row per product version (SCD type 2), plus the unknown product (-1)")
register("silver.dim_location", "one row per city, plus the unknown city (-1)")
register("silver.dim_province", "one row per province, plus the unknown province (-1)")
register("silver.fct_order_lines", "one row per order line, keyed by (order_id, order_detail_id)")
register("silver.fct_orders", "one row per order")
for _src in SOURCES.values():
    register(f"quarantine.{_src.name}", f"one row per rejected {_src.name} bronze row, with its reason")
for _mart, _grain in [
    ("dm_sales_monthly", "one row per month"),
    ("dm_product_monthly", "one row per product_id x month"),
    ("dm_product_ranking", "one row per product_id, over all time"),
    ("dm_region_monthly", "one row per province x city x month, the order's own province"),
    ("dm_category_gender_monthly", "one row per category x gender x month"),
    ("dm_customer_rfm", "one row per customer"),
    ("dm_customer_cohorts", "one row per cohort month x months since the first order"),
    ("dm_basket_pairs", "one row per unordered pair of product styles bought in the same order"),
    ("dm_sales_live", "one row per minute of order time with sales, over the current and the previous day"),
]:
    register(f"gold.{_mart}", _grain)


def run_parallel(tasks: dict[str, Callable[[], T]], threads: int = 4) -> dict[str, T]:
    """Run independent Spark actions from a thread pool; re-raise the first failure (in ``tasks`` order)."""
    if threads <= 1 or len(tasks) <= 1:
        return {name: task() for name, task in tasks.items()}
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="apparel-write") as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
        return {name: fut.result() for name, fut in futures.items()}


class Catalog:
    def __init__(self, settings: Settings):
        self.root = settings.lakehouse

    def path(self, name: str) -> str:
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
        info = TABLES[name]
        return f"{self.root}/{info.layer}/{info.table}"

    def exists(self, spark, name: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(spark, self.path(name))

    def is_empty(self, spark, name: str) -> bool:
        """True when the table exists and holds no data file (read from the Delta log, no scan)."""
        from delta.tables import DeltaTable

        if not self.exists(spark, name):
            return False
        return DeltaTable.forPath(spark, self.path(name)).detail().collect()[0]["numFiles"] == 0

    def read(self, spark, name: str):
        return spark.read.format("delta").load(self.path(name))

    def overwrite(self, df, name: str, partition_by: list[str] | None = None) -> dict:
        """Replace the table's content in one Delta commit; returns the commit's operation metrics."""
        writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.save(self.path(name))
        return self.last_commit(df.sparkSession, name)

    def append(self, df, name: str, merge_schema: bool = False) -> dict:
        """Append in one commit; ``merge_schema`` adds new columns of ``df`` to an existing table (ops tables
        that gained columns)."""
        writer = df.write.format("delta").mode("append")
        if merge_schema:
            writer = writer.option("mergeSchema", "true")
        writer.save(self.path(name))
        return self.last_commit(df.sparkSession, name)

    def overwrite_all(self, frames: dict[str, object], partition_by: dict[str, list[str]] | None = None,
                      threads: int = 4) -> dict[str, dict]:
        """Overwrite several tables, each in its own Delta commit, ``threads`` at a time.

        A small Delta commit is mostly driver-side latency (log replay, a handful of tiny Spark jobs), so
        concurrent commits to different tables finish several times sooner than one after another."""
        partition_by = partition_by or {}
        return run_parallel({name: (lambda n=name: self.overwrite(frames[n], n, partition_by.get(n)))
                             for name in frames}, threads)

    def version(self, spark, name: str) -> int | None:
        """The table's current Delta version (None when it does not exist), from the Delta log on the driver:
        no Spark job, so checking seven tables for news costs milliseconds."""
        from py4j.protocol import Py4JJavaError

        if not self.exists(spark, name):
            return None
        try:
            log = spark._jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, self.path(name))
            return int(log.update(False, spark._jvm.scala.Option.empty(), spark._jvm.scala.Option.empty()).version())
        except (Py4JJavaError, TypeError, AttributeError):  # the internal API moved: ask the public one
            return self.last_commit(spark, name)["version"]

    def count(self, spark, name: str) -> int:
        """Rows of the table (Delta answers an unfiltered count from its file statistics)."""
        return self.read(spark, name).count()

    def merge_changes(self, name: str, new, old, key: list[str], null_safe: bool = False) -> dict:
        """Make the rows of ``old`` (the table's current rows in some scope) become ``new`` (the same scope
        recomputed), in one Delta MERGE that touches only what differs: rows of ``new`` not in ``old`` are
        updated or inserted by ``key``, keys of ``old`` missing from ``new`` are deleted. Nothing differs: no
        commit. ``key`` must be unique in both; ``null_safe`` matches keys with ``<=>`` (nulls equal).

        Returns ``{"upserts", "deletes", "version", "metrics"}``; the commit's metrics are checked against the
        counted changes, so a row lost or doubled by the MERGE fails the run."""
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        from apparel.errors import AccountingError

        cols = [c for c in new.columns]
        upserts = new.select(*cols).subtract(old.select(*cols))
        old_keys, new_keys = old.select(*key), new.select(*key)
        if null_safe:
            cond = [old_keys[k].eqNullSafe(new_keys[k]) for k in key]
            deletes = old_keys.join(new_keys, cond, "left_anti")
        else:
            deletes = old_keys.join(new_keys, key, "left_anti")
        staged = (upserts.withColumn("_delete", F.lit(False))
                  .unionByName(deletes.withColumn("_delete", F.lit(True)), allowMissingColumns=True)
                  .localCheckpoint())
        n = {r["_delete"]: int(r["n"]) for r in staged.groupBy("_delete").agg(F.count(F.lit(1)).alias("n")).collect()}
        n_up, n_del = n.get(False, 0), n.get(True, 0)
        if n_up == 0 and n_del == 0:
            return {"upserts": 0, "deletes": 0, "version": None, "metrics": {}}
        op = "<=>" if null_safe else "="
        cond = " AND ".join(f"t.`{k}` {op} s.`{k}`" for k in key)
        (DeltaTable.forPath(new.sparkSession, self.path(name)).alias("t").merge(staged.alias("s"), cond)
         .whenMatchedDelete(condition="s._delete")
         .whenMatchedUpdate(condition="NOT s._delete", set={c: f"s.`{c}`" for c in cols if c not in key})
         .whenNotMatchedInsert(condition="NOT s._delete", values={c: f"s.`{c}`" for c in cols})
         .execute())
        commit = self.last_commit(new.sparkSession, name)
        m = commit["metrics"]
        done_up = int(m.get("numTargetRowsInserted", 0)) + int(m.get("numTargetRowsUpdated", 0))
        done_del = int(m.get("numTargetRowsDeleted", 0))
        if (done_up, done_del) != (n_up, n_del):
            raise AccountingError(f"{name}: MERGE (version {commit['version']}) upserted {done_up} and deleted "
                                  f"{done_del} row(s), expected {n_up} and {n_del}")
        return {"upserts": n_up, "deletes": n_del, "version": commit["version"], "metrics": m}

    def last_commit(self, spark, name: str) -> dict:
        """``{"version", "operation", "metrics", "rows", "timestamp"}`` of the newest commit; ``rows`` is the
        number of rows it wrote."""
        from delta.tables import DeltaTable

        return _commit(DeltaTable.forPath(spark, self.path(name)).history(1).collect()[0])

    def tagged_commit(self, spark, name: str, tag: str, within: int = 20) -> dict | None:
        """The commit whose ``userMetadata`` is ``tag`` among the table's last ``within`` (as :meth:`last_commit`
        describes it), or None."""
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        row = DeltaTable.forPath(spark, self.path(name)).history(within).where(F.col("userMetadata") == tag).first()
        return None if row is None else _commit(row)


def _commit(row) -> dict:
    """A row of Delta's history as ``{"version", "operation", "metrics", "rows", "timestamp"}``."""
    metrics = dict(row["operationMetrics"] or {})
    return {
        "version": int(row["version"]),
        "operation": row["operation"],
        "metrics": metrics,
        "rows": int(metrics.get("numOutputRows", 0)),
        "timestamp": row["timestamp"],
    }
