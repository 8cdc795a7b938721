"""The table catalog: logical names (``bronze.orders``, ``ops.ingest_runs``) mapped to Delta locations under
the lakehouse root, plus the small amount of Delta I/O every job shares.

Layers are folders: ``<lakehouse>/<layer>/<table>``. Writes are single Delta commits (atomic overwrite
or append), so a reader never sees a half-written table.

Every silver and gold table declares its key and its schema here (docs/data_model.md, *Declared keys and
schemas*). Before each commit to such a table, :class:`Catalog` checks what is about to be written: the columns
and their types equal the declaration, and the key is unique and never null. A violation raises
:class:`~apparel.errors.DeclarationError` (the table, the key, a sample) and nothing is committed. A table's
schema is replaced (Delta's ``overwriteSchema``) only when the stored one differs from the declaration: a
declared migration, logged.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, TypeVar

from apparel import crashpoints
from apparel.config import Settings
from apparel.errors import DeclarationError
from apparel.schemas import SOURCES, STORE_TABLES
from apparel.spark import jvm_class, pin

T = TypeVar("T")
LAYERS = ("bronze", "silver", "gold", "quarantine", "ops")
DECLARED_LAYERS = ("silver", "gold")  # every table of these declares its key and schema
KEY_SAMPLE = 5  # offending keys an error quotes


@dataclass(frozen=True)
class TableInfo:
    name: str       # "<layer>.<table>"
    grain: str      # one line: what one row is
    key: tuple[str, ...] = ()                   # the columns that identify a row (unique, never null)
    columns: tuple[tuple[str, str], ...] = ()   # the declared schema: (column, Spark SQL type) in order

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def declared(self) -> bool:
        return bool(self.columns)

    @property
    def ddl(self) -> str:
        """The declared schema as Spark DDL (``"month date, orders bigint"``)."""
        return ", ".join(f"{c} {t}" for c, t in self.columns)


TABLES: dict[str, TableInfo] = {}


def parse_columns(ddl: str) -> tuple[tuple[str, str], ...]:
    """``"a bigint, b decimal(10,2)"`` -> ``(("a", "bigint"), ("b", "decimal(10,2)"))``: the simple types the
    declarations use, written as Spark's ``DataType.simpleString()`` writes them."""
    parts, depth, cur = [], 0, ""
    for ch in ddl:
        depth += ch in "(<"
        depth -= ch in ")>"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    out = []
    for part in parts:
        name, _, typ = part.strip().partition(" ")
        if not name or not typ.strip():
            raise ValueError(f"bad column declaration {part.strip()!r} in {ddl!r}")
        out.append((name, typ.strip().replace(" ", "")))
    return tuple(out)


def register(name: str, grain: str, key: tuple[str, ...] = (), schema: str = "") -> TableInfo:
    columns = parse_columns(schema) if schema else ()
    info = TableInfo(name, grain, tuple(key), columns)
    if info.layer not in LAYERS:
        raise ValueError(f"unknown layer in {name!r}")
    if info.layer in DECLARED_LAYERS and not (info.key and info.columns):
        raise ValueError(f"{name}: a {info.layer} table declares its key and its schema")
    missing = [k for k in info.key if k not in dict(columns)]
    if missing:
        raise ValueError(f"{name}: key column(s) {missing} are not declared")
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
# Silver and gold: key and schema (types as Spark writes them: bigint, int, string, date, timestamp, double,
# boolean), in the column order of docs/data_model.md.
register("silver.dim_date", "one row per calendar day covering every order date, plus the unknown day (-1)",
         ("date_key",), "date_key int, date date, year int, quarter int, month int, month_name string, "
         "day_of_month int, day_of_week int, is_weekend boolean")
register("silver.dim_customer", "one row per customer version (SCD type 2), plus the unknown customer (-1)",
         ("customer_key",), "customer_key bigint, customer_id bigint, first_name string, last_name string, "
         "full_name string, gender string, valid_from date, valid_to date, is_current boolean")
register("silver.dim_product", "one row per product version (SCD type 2), plus the unknown product (-1)",
         ("product_key",), "product_key bigint, product_id bigint, product_name string, product_type string, "
         "color string, size string, price bigint, product_category_id bigint, category_name string, "
         "valid_from date, valid_to date, is_current boolean")
register("silver.dim_location", "one row per city, plus the unknown city (-1)", ("city_id",),
         "city_id bigint, city_name string, city_type string, province_id bigint, province_name string")
register("silver.dim_province", "one row per province, plus the unknown province (-1)", ("province_id",),
         "province_id bigint, province_name string")
register("silver.fct_order_lines", "one row per order line, keyed by (order_id, order_detail_id)",
         ("order_id", "order_detail_id"),
         "order_detail_id bigint, order_id bigint, order_date timestamp, date_key int, customer_key bigint, "
         "customer_id bigint, product_key bigint, product_id bigint, city_id bigint, province_id bigint, "
         "qty bigint, item_price bigint, line_revenue bigint, order_month date")
register("silver.fct_orders", "one row per order", ("order_id",),
         "order_id bigint, order_date timestamp, date_key int, customer_key bigint, customer_id bigint, "
         "city_id bigint, province_id bigint, lines bigint, units bigint, order_revenue bigint")
for _src in SOURCES.values():
    register(f"quarantine.{_src.name}", f"one row per rejected {_src.name} bronze row, with its reason")
for _mart, _grain, _key, _schema in [
    ("dm_sales_monthly", "one row per month", ("month",),
     "month date, orders bigint, customers bigint, units bigint, revenue bigint, avg_order_value bigint, "
     "revenue_mom_pct double"),
    ("dm_product_monthly", "one row per product_id x month", ("product_id", "month"),
     "product_id bigint, product_name string, product_type string, color string, size string, "
     "category_name string, month date, orders bigint, units bigint, revenue bigint"),
    ("dm_product_ranking", "one row per product_id, over all time", ("product_id",),
     "product_id bigint, product_name string, size string, category_name string, units bigint, revenue bigint, "
     "revenue_share_pct double, revenue_rank int"),
    ("dm_region_monthly", "one row per province x city x month, the order's own province",
     ("province_id", "city_id", "month"),
     "month date, province_id bigint, province_name string, city_id bigint, city_name string, city_type string, "
     "orders bigint, customers bigint, units bigint, revenue bigint"),
    ("dm_category_gender_monthly", "one row per category x gender x month", ("category_name", "gender", "month"),
     "category_name string, gender string, month date, customers bigint, units bigint, revenue bigint"),
    ("dm_customer_rfm", "one row per customer", ("customer_id",),
     "customer_id bigint, full_name string, gender string, first_order_date date, last_order_date date, "
     "orders bigint, units bigint, revenue bigint, recency_days int, r_score int, f_score int, m_score int, "
     "rfm_segment string"),
    ("dm_customer_cohorts", "one row per cohort month x months since the first order",
     ("cohort_month", "months_since_first"),
     "cohort_month date, months_since_first int, cohort_size bigint, active_customers bigint, "
     "retention_pct double"),
    ("dm_basket_pairs", "one row per unordered pair of product styles bought in the same order",
     ("style_a", "style_b"),
     "style_a string, style_b string, orders_together bigint, support double, confidence_a_to_b double, "
     "confidence_b_to_a double, lift double"),
    ("dm_sales_live", "one row per minute of order time with sales, over the current and the previous day",
     ("minute",), "minute timestamp, orders bigint, units bigint, revenue bigint, customers bigint"),
]:
    register(f"gold.{_mart}", _grain, _key, _schema)


def declared(name: str) -> TableInfo | None:
    """The table's declaration, or None for a table that declares nothing (bronze, quarantine, ops)."""
    info = TABLES.get(name)
    return info if info is not None and info.declared else None


def schema_problems(info: TableInfo, schema) -> list[str]:
    """How a Spark ``StructType`` differs from ``info``'s declared schema (empty: it does not)."""
    got = [(f.name, f.dataType.simpleString()) for f in schema.fields]
    want = list(info.columns)
    if got == want:
        return []
    g, w = dict(got), dict(want)
    problems = [f"column {c} ({t}) is missing" for c, t in want if c not in g]
    problems += [f"column {c} ({t}) is not declared" for c, t in got if c not in w]
    problems += [f"column {c} is {g[c]}, declared {t}" for c, t in want if c in g and g[c] != t]
    if not problems:
        problems.append(f"columns in order ({', '.join(c for c, _ in got)}), declared "
                        f"({', '.join(c for c, _ in want)})")
    return problems


def key_violations(df, key: tuple[str, ...] | list[str], sample: int = KEY_SAMPLE) -> list:
    """Up to ``sample`` keys of ``df`` that are null or held by more than one row: rows of the key columns and
    ``_rows`` (one Spark job)."""
    from pyspark.sql import functions as F

    null = F.lit(False)
    for k in key:
        null = null | F.col(k).isNull()
    bad = (df.groupBy(*key).agg(F.count(F.lit(1)).alias("_rows"))
           .where((F.col("_rows") > 1) | null).orderBy(F.desc("_rows"), *key))
    return bad.limit(sample).collect()


def describe_keys(key, rows) -> str:
    """``(k1=v1, k2=NULL) x2; ...``: each row's key values, and its ``_rows`` (the rows holding it) when it has
    that column."""
    def one(r) -> str:
        values = ", ".join(f"{k}={r[k]!r}" if r[k] is not None else f"{k}=NULL" for k in key)
        return f"({values})" + (f" x{r['_rows']}" if "_rows" in r.__fields__ else "")

    return "; ".join(one(r) for r in rows)


def run_parallel(tasks: dict[str, Callable[[], T]], threads: int = 4) -> dict[str, T]:
    """Run independent Spark actions from a thread pool; re-raise the first failure (in ``tasks`` order)."""
    if threads <= 1 or len(tasks) <= 1:
        return {name: task() for name, task in tasks.items()}
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="apparel-write") as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
        return {name: fut.result() for name, fut in futures.items()}


class Catalog:
    def __init__(self, settings: Settings, log: Callable[[str], None] | None = None):
        self.root = settings.lakehouse
        self.log = log or (lambda msg: print(msg, file=sys.stderr))

    def path(self, name: str) -> str:
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
        info = TABLES[name]
        return f"{self.root}/{info.layer}/{info.table}"

    def exists(self, spark, name: str) -> bool:
        """Whether the table has a committed version, from its Delta log brought up to date. (Delta's
        ``isDeltaTable`` answers from the session's cached log: a table another process committed after this one
        first looked at its folder, say after a killed first commit left an empty ``_delta_log``, stays missing.)"""
        return self.version(spark, name) is not None

    def is_empty(self, spark, name: str) -> bool:
        """True when the table exists and holds no data file (read from the Delta log, no scan)."""
        from delta.tables import DeltaTable

        if not self.exists(spark, name):
            return False
        return DeltaTable.forPath(spark, self.path(name)).detail().collect()[0]["numFiles"] == 0

    def read(self, spark, name: str):
        return spark.read.format("delta").load(self.path(name))

    def overwrite(self, df, name: str, partition_by: list[str] | None = None) -> dict:
        """Replace the table's content in one Delta commit; returns the commit's operation metrics.

        A declared table (silver, gold) is checked first (:meth:`check`), and its schema replaced only when the
        stored one differs from the declaration (a migration, logged). A table that declares nothing (a bronze
        snapshot, quarantine) takes ``df``'s schema."""
        def write(df, migrate: bool) -> None:
            writer = df.write.format("delta").mode("overwrite")
            if migrate:
                writer = writer.option("overwriteSchema", "true")
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            writer.save(self.path(name))

        return self._checked_write(df, name, write, may_migrate=True)

    def _checked_write(self, df, name: str, write: Callable, may_migrate: bool) -> dict:
        """``write(df, migrate)`` after :meth:`check` of a declared table, on ``df`` cached meanwhile so that it is
        computed once; ``migrate`` (when ``may_migrate``): the stored schema differs from the declaration, or the
        table declares nothing. Returns the commit (:meth:`last_commit`)."""
        info = declared(name)
        migrate, cached = info is None, False
        if info is not None:
            if not df.is_cached:
                df, cached = df.persist(), True
            self.check(df, name)
            migrate = may_migrate and self._migration(df.sparkSession, info)
        try:
            write(crashpoints.writing(df, name), migrate)
        finally:
            if cached:
                df.unpersist()
        crashpoints.reached(f"committed:{name}")
        return self.last_commit(df.sparkSession, name)

    def check(self, df, name: str, key_rows=None) -> None:
        """Raise :class:`DeclarationError` unless ``df`` may be committed to the declared table ``name``: its
        columns and types equal the declaration, and its key is unique and never null (over ``key_rows``, a
        frame of the same key columns, when given: the rows a MERGE upserts). Nothing is written either way."""
        info = declared(name)
        if info is None:
            return
        problems = schema_problems(info, df.schema)
        if problems:
            raise DeclarationError(f"{name}: what the job was about to write does not match the declared schema: "
                                   f"{'; '.join(problems)}; nothing was committed")
        bad = key_violations(df if key_rows is None else key_rows, info.key)
        if bad:
            nulls = any(any(r[k] is None for k in info.key) for r in bad)
            what = "is null or not unique" if nulls else "is not unique"
            raise DeclarationError(f"{name}: key ({', '.join(info.key)}) {what}: {describe_keys(info.key, bad)}"
                                   f"{' (a sample)' if len(bad) == KEY_SAMPLE else ''}; nothing was committed")

    def check_new_keys(self, spark, name: str, inserts) -> None:
        """Raise :class:`DeclarationError` when keys about to be inserted into the declared table ``name`` (rows
        of ``inserts``, unique among themselves: :meth:`check`) are held by a stored row already."""
        info = declared(name)
        if info is None or not self.exists(spark, name):
            return
        taken = inserts.select(*info.key).join(self.read(spark, name).select(*info.key), list(info.key),
                                                 "left_semi").limit(KEY_SAMPLE).collect()
        if taken:
            raise DeclarationError(f"{name}: key ({', '.join(info.key)}) is not unique: the row(s) to insert "
                                   f"{describe_keys(info.key, taken)} are stored already; nothing was committed")

    def replace_where(self, df, name: str, where: str) -> dict:
        """Replace the rows of ``name`` matching the SQL predicate ``where`` with ``df`` (Delta's
        ``replaceWhere``, one commit), checked like :meth:`overwrite` (the key of ``df`` holds the predicate's
        columns, so the rows kept cannot collide with it). It never migrates: the rows kept keep the schema."""
        def write(df, _migrate: bool) -> None:
            df.write.format("delta").mode("overwrite").option("replaceWhere", where).save(self.path(name))

        return self._checked_write(df, name, write, may_migrate=False)

    def stored_differs(self, spark, name: str) -> list[str]:
        """How the stored schema of the declared table ``name`` differs from its declaration (empty: it does not,
        or the table does not exist yet, or declares nothing)."""
        info = declared(name)
        if info is None or not self.exists(spark, name):
            return []
        return schema_problems(info, self.read(spark, name).schema)

    def refuse_stored_drift(self, spark, name: str, advice: str) -> None:
        """Raise :class:`DeclarationError` when the stored schema of ``name`` differs from its declaration: a
        change in place (a MERGE) cannot migrate it; ``advice`` says what to do instead."""
        stored = self.stored_differs(spark, name)
        if stored:
            raise DeclarationError(f"{name}: the stored schema differs from the declaration ({'; '.join(stored)}): "
                                   f"{advice}; nothing was committed")

    def _migration(self, spark, info: TableInfo) -> bool:
        """Whether the stored table's schema differs from ``info``'s declaration (logged): the overwrite then
        replaces it. A table not created yet needs no migration."""
        problems = self.stored_differs(spark, info.name)
        if problems:
            self.log(f"[catalog] {info.name}: migrating the stored schema to the declaration ({'; '.join(problems)})")
        return bool(problems)

    def append(self, df, name: str, merge_schema: bool = False) -> dict:
        """Append in one commit; ``merge_schema`` adds new columns of ``df`` to an existing table (ops tables
        that gained columns)."""
        writer = crashpoints.writing(df, name).write.format("delta").mode("append")
        if merge_schema:
            writer = writer.option("mergeSchema", "true")
        writer.save(self.path(name))
        crashpoints.reached(f"committed:{name}")
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
        from delta.tables import DeltaTable
        from py4j.protocol import Py4JJavaError

        try:
            version = self._log_version(spark, name)
        except (Py4JJavaError, TypeError, AttributeError):  # the internal API moved: ask the public one
            if not DeltaTable.isDeltaTable(spark, self.path(name)):
                return None
            return self._history_commit(spark, name)["version"]
        return version if version >= 0 else None

    def _log_version(self, spark, name: str) -> int:
        log = jvm_class(spark, "org.apache.spark.sql.delta.DeltaLog").forTable(spark._jsparkSession, self.path(name))
        none = jvm_class(spark, "scala.Option").empty()
        return int(log.update(False, none, none).version())

    def count(self, spark, name: str) -> int:
        """Rows of the table (Delta answers an unfiltered count from its file statistics)."""
        return self.read(spark, name).count()

    def merge_changes(self, name: str, new, old, key: list[str], null_safe: bool = False,
                      stored_checked: bool = False) -> dict:
        """Make the rows of ``old`` (the table's current rows in some scope) become ``new`` (the same scope
        recomputed), in one Delta MERGE that touches only what differs: rows of ``new`` not in ``old`` are
        updated or inserted by ``key``, keys of ``old`` missing from ``new`` are deleted. Nothing differs: no
        commit. ``key`` must be unique in both; ``null_safe`` matches keys with ``<=>`` (nulls equal).

        Returns ``{"upserts", "deletes", "version", "metrics"}``; the commit's metrics are checked against the
        counted changes, so a row lost or doubled by the MERGE fails the run. ``stored_checked``: the caller has
        just found the stored schema equal to the declaration (:meth:`stored_differs`), so it is not read again."""
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        from apparel.errors import AccountingError

        info = declared(name)
        if info is not None and not stored_checked:
            self.refuse_stored_drift(new.sparkSession, name, "a MERGE cannot migrate it; rebuild the table "
                                                             "(apparel run --full-refresh)")
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
                  .transform(pin))
        if info is not None:  # the stored keys are unique: so are they after upserts with unique keys
            self.check(new, name, key_rows=staged.where(~F.col("_delete")).select(*key))
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
        crashpoints.reached(f"committed:{name}")
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
        number of rows it wrote. Read on the driver from the commit's own file in ``_delta_log`` (its
        ``commitInfo`` action, what Delta's history shows): no Spark job. The jobs commit a few hundred times a
        run, and Delta's ``history(1)`` costs two Spark jobs each."""
        from py4j.protocol import Py4JJavaError

        try:
            found = self._logged_commit(spark, name, self._log_version(spark, name))
        except (Py4JJavaError, TypeError, AttributeError):  # the internal API moved: ask the public one
            found = None
        return found if found is not None else self._history_commit(spark, name)

    def tagged_commit(self, spark, name: str, tag: str, within: int = 20) -> dict | None:
        """The commit whose ``userMetadata`` is ``tag`` among the table's last ``within`` (as :meth:`last_commit`
        describes it), or None. Read like :meth:`last_commit`, newest first (the stream looks for the commit it
        has just made: one file), else from Delta's history."""
        from delta.tables import DeltaTable
        from py4j.protocol import Py4JJavaError
        from pyspark.sql import functions as F

        try:
            newest = self._log_version(spark, name)
            for version in range(newest, max(newest - within, -1), -1):
                found = self._logged_commit(spark, name, version, tag)
                if found is None:
                    break  # a commit without commitInfo: Delta's own answer
                if found:
                    return found
            else:
                return None
        except (Py4JJavaError, TypeError, AttributeError):  # moved, or a commit file cleaned up: Delta's answer
            pass
        row = DeltaTable.forPath(spark, self.path(name)).history(within).where(F.col("userMetadata") == tag).first()
        return None if row is None else _commit(row)

    def _logged_commit(self, spark, name: str, version: int, tag: str | None = None) -> dict | None:
        """Commit ``version`` of the table as :meth:`last_commit` describes it, from its file; None when the file
        has no ``commitInfo``; ``{}`` when ``tag`` is given and is not the commit's ``userMetadata``."""
        info = _commit_info(spark, f"{self.path(name)}/_delta_log/{version:020d}.json")
        if info is None:
            return None
        if tag is not None and info.get("userMetadata") != tag:
            return {}
        metrics = dict(info.get("operationMetrics") or {})
        ms = info.get("inCommitTimestamp") or info["timestamp"]
        return {
            "version": version,
            "operation": info.get("operation"),
            "metrics": metrics,
            "rows": int(metrics.get("numOutputRows", 0)),
            "timestamp": datetime.fromtimestamp(ms / 1000),
        }

    def _history_commit(self, spark, name: str) -> dict:
        from delta.tables import DeltaTable

        return _commit(DeltaTable.forPath(spark, self.path(name)).history(1).collect()[0])


def _commit_info(spark, commit_file: str) -> dict | None:
    """The ``commitInfo`` action of one Delta commit file (JSON lines), read through Hadoop's file system (local
    disk and s3a alike); None when the commit has none."""
    path = jvm_class(spark, "org.apache.hadoop.fs.Path")(commit_file)
    stream = path.getFileSystem(spark._jsc.hadoopConfiguration()).open(path)
    try:
        text = jvm_class(spark, "org.apache.commons.io.IOUtils").toString(stream, "UTF-8")
    finally:
        stream.close()
    for line in text.splitlines():
        if '"commitInfo"' in line:
            action = json.loads(line)
            if "commitInfo" in action:
                return action["commitInfo"]
    return None


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
