"""Bronze ingest: the 7 source tables landed as Delta tables at ``<lakehouse>/bronze/<table>``.

Inputs: the store database (customers, products, product_categories, orders, order_details) read by
Spark JDBC, and the operations workbooks (provinces, cities) read from the landing area with pandas.

Outputs and grain:
- ``bronze.orders``, ``bronze.order_details``: one row per source row per extraction. Incremental: each
  run appends the rows whose key is above the high-water mark already in bronze (``order_id`` for
  orders; ``(order_id, order_detail_id)`` in that order for order lines, because the store reuses line
  ids across orders). It also re-reads a lookback window below the mark (the last
  ``bronze.lookback_orders`` order ids: ``order_id > mark - N``) and the rows with a null key, and lands
  those bronze does not hold yet (a multiset anti-join on every source column), so a line added later to
  a recent order, or an order id committed out of sequence, lands exactly once.
- the five master tables: one row per source row of the latest snapshot. A run compares the extracted
  snapshot's content fingerprint (row count and order-independent hashes of every source column) with
  the current bronze table's: when they are equal nothing is written (no new Delta version); otherwise the
  table is replaced in one Delta overwrite commit. Earlier snapshots stay readable through time travel.
- ``ops.ingest_runs``: one row per table per batch, with the rows the source held for the extraction
  and the rows the Delta commit wrote. They must be equal, or the run fails (for an unchanged snapshot:
  the current bronze version must hold as many rows as the source). Per incremental table it also
  reconciles the source's row count at or below the new mark with bronze's: a difference (a late row
  below the lookback window, a row deleted in the store) is recorded and reported as a warning.

Columns are the source's, typed by :mod:`apparel.schemas`, plus ``_ingested_at``, ``_source`` and
``_batch_id``; orders and order_details also ``_shard``. Bronze never drops or edits a row: cleaning is silver's job.

A sharded store (``store_shard_urls``, docs/topology.md): orders and order_details are read from each shard
directly, the shards in parallel, each row tagged with its shard in ``_shard`` (NULL from a single database). The
high-water mark stays one mark over all shards (an order id is unique across them); each shard is counted and
read up to its own largest key, and its rows are accounted on their own (``ops.ingest_runs.shard_rows``: rows read
per shard, each equal to what that shard held for the extraction). Before anything is written, the run checks
that no order id is on two shards (:class:`~apparel.errors.ShardError`).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Iterable

from apparel import crashpoints
from apparel.catalog import Catalog, run_parallel
from apparel.config import Settings
from apparel.errors import AccountingError, ConfigError, ShardError, SnapshotShrinkError
from apparel.objectstore import landing_file
from apparel.runtime import new_batch_id, run_job
from apparel.schemas import EXCEL_TABLES, SOURCES, STORE_TABLES, SourceTable
from apparel.sources import ReadResult, frame_rows, read_workbook
from apparel.spark import local_frame, pin
from apparel.store import StoreDB

GROUPS = {"store": STORE_TABLES, "excel": EXCEL_TABLES}
SHARDED = ("orders", "order_details")  # by hash of order_id on a sharded store (apparel.shards)
SHARD_SAMPLE = 5  # order ids an error about a sharded store names


# --- pure transformations ---------------------------------------------------------------------------

def with_metadata(df, source: str, batch_id: str, ingested_at: datetime):
    """Append bronze's lineage columns to a source DataFrame."""
    from pyspark.sql import functions as F

    return (df.withColumn("_ingested_at", F.lit(ingested_at).cast("timestamp"))
              .withColumn("_source", F.lit(source))
              .withColumn("_batch_id", F.lit(batch_id)))


def _key_after_sql(key: tuple[str, ...], hwm: tuple[int, ...]) -> str:
    """The key tuple sorts after ``hwm`` (lexicographically); assumes the key columns are not null."""
    terms = []
    for i, col in enumerate(key):
        eq = [f"{key[j]} = {int(hwm[j])}" for j in range(i)]
        terms.append("(" + " AND ".join(eq + [f"{col} > {int(hwm[i])}"]) + ")")
    return " OR ".join(terms)


def _not_null_sql(key: tuple[str, ...]) -> str:
    return " AND ".join(f"{k} IS NOT NULL" for k in key)


def above_watermark_sql(key: tuple[str, ...], hwm: tuple[int, ...] | None) -> str:
    """SQL predicate selecting rows whose non-null key tuple sorts after ``hwm`` (lexicographically)."""
    if hwm is None:
        return _not_null_sql(key)
    return f"{_not_null_sql(key)} AND ({_key_after_sql(key, hwm)})"


def at_or_below_watermark_sql(key: tuple[str, ...], hwm: tuple[int, ...]) -> str:
    """SQL predicate selecting rows whose non-null key tuple sorts at or before ``hwm``."""
    return f"{_not_null_sql(key)} AND NOT ({_key_after_sql(key, hwm)})"


def lookback_sql(key: tuple[str, ...], hwm: tuple[int, ...] | None, lookback: int) -> str | None:
    """SQL predicate of the lookback window: keyed rows at or below ``hwm`` whose first key column (the order
    id) is among the last ``lookback`` ids, ``key[0] > hwm[0] - lookback``. None without a mark or a window."""
    if hwm is None or lookback <= 0:
        return None
    return f"{at_or_below_watermark_sql(key, hwm)} AND {key[0]} > {int(hwm[0]) - lookback}"


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


def content_fingerprint(df, columns: list[str]):
    """One row: the row count and two order-independent hashes of ``columns`` (sums of a 64-bit and a 32-bit
    hash of each row's JSON, exact decimals): equal multisets of rows give equal fingerprints, whatever
    their order. JSON keeps the column names, so a value moved to another column changes the hash."""
    from pyspark.sql import functions as F

    row = F.to_json(F.struct(*[F.col(c) for c in columns]))
    return df.agg(F.count(F.lit(1)).alias("rows"),
                  F.coalesce(F.sum(F.xxhash64(row).cast("decimal(38,0)")), F.lit(0)).alias("xxhash64"),
                  F.coalesce(F.sum(F.hash(row).cast("decimal(38,0)")), F.lit(0)).alias("murmur3"))


def fingerprint_text(row) -> str:
    """``rows=200 xxhash64=... murmur3=...``: what ``ops.ingest_runs.content_fingerprint`` holds."""
    return f"rows={int(row['rows'])} xxhash64={int(row['xxhash64'])} murmur3={int(row['murmur3'])}"


def reconciliation_warning(table: str, source_rows: int | None, bronze_rows: int | None,
                           watermark: str | None) -> str | None:
    """The warning for an incremental table whose source and bronze disagree on the rows at or below the mark
    (None when they agree)."""
    if source_rows is None or bronze_rows is None or source_rows == bronze_rows:
        return None
    head = (f"bronze.{table}: the source holds {source_rows:,} row(s) at or below the mark {watermark}, "
            f"bronze {bronze_rows:,}")
    if source_rows > bronze_rows:
        order_id = (watermark or "").split(",")[0]
        return (f"{head}: {source_rows - bronze_rows:,} row(s) below the lookback window are not landed; "
                f"land them with one bronze run with APPAREL_BRONZE_LOOKBACK_ORDERS={order_id}")
    return (f"{head}: bronze holds {bronze_rows - source_rows:,} row(s) the source no longer has "
            "(deleted or edited in the store)")


# --- the job ----------------------------------------------------------------------------------------

@dataclass
class IngestResult:
    batch_id: str
    table: str
    mode: str                 # incremental | snapshot | snapshot-unchanged
    source: str
    source_rows: int          # rows the source held for this extraction
    rows_written: int         # rows the Delta commit wrote (0 for an unchanged snapshot: no commit)
    delta_version: int | None  # the version written; for an unchanged snapshot, the version that holds it
    watermark_before: str | None
    watermark_after: str | None
    seconds: float
    # incremental tables: rows landed from the lookback window below the mark, the window's size, and the
    # reconciliation of the rows at or below the new mark (source minus bronze: 0 when they agree)
    late_rows: int | None = None
    lookback_orders: int | None = None
    source_rows_below_mark: int | None = None
    bronze_rows_below_mark: int | None = None
    unreconciled_rows: int | None = None
    # snapshots: the extracted snapshot's content fingerprint (see content_fingerprint)
    content_fingerprint: str | None = None
    # a sharded store's tables: rows read from each shard ({"shard_1": n, ...}); None from one database
    shard_rows: dict[str, int] | None = None

    @property
    def warning(self) -> str | None:
        return reconciliation_warning(self.table, self.source_rows_below_mark, self.bronze_rows_below_mark,
                                      self.watermark_after)


INGEST_RUNS_SCHEMA = (
    "batch_id STRING, table STRING, mode STRING, source STRING, source_rows BIGINT, rows_written BIGINT, "
    "delta_version BIGINT, watermark_before STRING, watermark_after STRING, seconds DOUBLE, "
    "ingested_at TIMESTAMP, late_rows BIGINT, lookback_orders BIGINT, source_rows_below_mark BIGINT, "
    "bronze_rows_below_mark BIGINT, unreconciled_rows BIGINT, content_fingerprint STRING, "
    "shard_rows MAP<STRING,BIGINT>")


def bronze_warnings(results: list[IngestResult]) -> list[str]:
    """The run's reconciliation warnings, for the run summary."""
    return [r.warning for r in results if r.warning]


@dataclass
class Extraction:
    """What one incremental extraction read: the rows to land and what they are made of."""
    df: object                 # DataFrame or None
    expected: int              # rows the source held for it: above the mark + late + new null-key rows
    before: tuple[int, ...] | None
    after: tuple[int, ...] | None
    above: int                 # keyed rows above the mark
    late: int                  # keyed rows from the lookback window that bronze did not hold
    keyed_in_bronze: int       # keyed rows bronze held before this run (all at or below the mark)
    by_shard: dict[str, int] | None = None  # a sharded store: ``expected`` per shard


def _watermark_text(key: tuple[int, ...] | None) -> str | None:
    return None if key is None else ",".join(str(v) for v in key)


class BronzeIngest:
    def __init__(self, spark, settings: Settings, log=print, batch_id: str | None = None,
                 now: datetime | None = None, accept_shrink: Iterable[str] = ()):
        self.spark = spark
        self.settings = settings
        self.catalog = Catalog(settings)
        self.store = StoreDB(settings.store_read_db)  # the extraction's read-only role, when set
        urls = settings.store_shard_urls
        if len(urls) == 1:
            raise ConfigError("store_shard_urls (APPAREL_STORE_SHARD_URLS) names one shard: a sharded store has 2 "
                              "or more; leave it empty for one database")
        self.shards = [(f"shard_{i + 1}", StoreDB(url)) for i, url in enumerate(urls)]
        if any(store.kind != "postgresql" for _, store in self.shards):
            raise ConfigError("store_shard_urls: the shards of a sharded store are PostgreSQL servers")
        self.readers_picked = False
        self.warnings: list[str] = []  # the run's warnings that belong to no table (a shard read from its primary)
        self.lookback = settings.bronze.lookback_orders
        self.max_loss = settings.bronze.snapshot_max_loss_percent
        snapshots = sorted(t.name for t in SOURCES.values() if not t.incremental)
        unknown = sorted(set(accept_shrink) - set(snapshots))
        if unknown:
            raise ConfigError(f"--accept-shrink {', '.join(unknown)}: not a master snapshot table; choose from "
                              f"{', '.join(snapshots)}")
        self.accept_shrink = set(accept_shrink)
        self.log = log
        self.now = now or datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)
        self.batch_id = batch_id or new_batch_id(self.now)

    # extraction ---------------------------------------------------------------------------------

    def sources(self, table: SourceTable) -> list[tuple[str | None, StoreDB]]:
        """Where the table is read: ``[(shard, store), ...]`` for a sharded table of a sharded store, else
        ``[(None, the store)]``."""
        return self.shards if self.shards and table.name in SHARDED else [(None, self.store)]

    def _jdbc(self, table: SourceTable, where: str | None = None, bounds: tuple[int, int] | None = None,
              store: StoreDB | None = None):
        query = f"SELECT {', '.join(table.column_names)} FROM {table.name}" + (f" WHERE {where}" if where else "")
        reader = (self.spark.read.format("jdbc").options(**(store or self.store).jdbc_options())
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

    def _bronze_state(self, table: SourceTable) -> tuple[tuple[int, ...] | None, int]:
        """The high-water mark in bronze and how many keyed rows bronze holds (all at or below it), in one scan."""
        from pyspark.sql import functions as F

        name = f"bronze.{table.name}"
        if not self.catalog.exists(self.spark, name):
            return None, 0
        keyed = F.expr(above_watermark_sql(table.key, None))
        row = self.catalog.read(self.spark, name).agg(
            F.max(F.when(keyed, F.struct(*table.key))).alias("mark"),
            F.count(F.when(keyed, F.lit(1))).alias("keyed")).collect()[0]
        mark = None if row["mark"] is None else tuple(int(v) for v in row["mark"])
        return mark, int(row["keyed"])

    def extract_incremental(self, table: SourceTable) -> Extraction:
        """New keyed rows above the watermark, plus the rows of the lookback window and the null-key rows that
        bronze does not hold yet; from each shard of a sharded store, in parallel."""
        before, keyed_in_bronze = self._bronze_state(table)
        sources = self.sources(table)
        parts = run_parallel({str(shard): (lambda shard=shard, store=store: self._extract_from(
            table, before, shard, store)) for shard, store in sources}, len(sources))
        frames = [f for part in parts.values() for f in part["frames"]]
        tops = [part["after"] for part in parts.values() if part["after"] is not None]
        after = max(tops) if tops else before
        df = None
        for f in frames:
            df = f if df is None else df.unionByName(f)
        above, late, nulls = (sum(part[k] for part in parts.values()) for k in ("above", "late", "nulls"))
        by_shard = {shard: parts[shard]["above"] + parts[shard]["late"] + parts[shard]["nulls"]
                    for shard in parts} if sources[0][0] is not None else None
        return Extraction(df, above + late + nulls, before, after, above, late, keyed_in_bronze, by_shard)

    def _extract_from(self, table: SourceTable, before: tuple[int, ...] | None, shard: str | None,
                      store: StoreDB) -> dict:
        """One store's (one shard's) part of :meth:`extract_incremental`: its frames (tagged ``_shard`` for a
        sharded table), its largest key read, and its counts of rows above the mark, late and null-key."""
        from pyspark.sql import functions as F

        where = above_watermark_sql(table.key, before)
        lo, hi, n_keyed = store.query(
            f"SELECT min({table.key[0]}), max({table.key[0]}), count(*) FROM {table.name} WHERE {where}")[0]
        frames, after = [], None
        if n_keyed:
            # cap the extraction at what was counted, so rows arriving meanwhile wait for the next run
            where = f"{where} AND {table.key[0]} <= {int(hi)}"
            frames.append(self._jdbc(table, where, (int(lo), int(hi)), store))
            keys = ", ".join(table.key)
            order = ", ".join(f"{k} DESC" for k in table.key)
            after = tuple(int(v) for v in store.query(
                f"SELECT {keys} FROM {table.name} WHERE {where} ORDER BY {order} LIMIT 1")[0])
        revisit, n_late, n_null = self._not_yet_landed(table, before, store)
        if revisit is not None:
            frames.append(revisit)
        if table.name in SHARDED:  # lineage of the shard the rows came from (NULL: one database)
            frames = [f.withColumn("_shard", F.lit(shard).cast("string")) for f in frames]
        return {"frames": frames, "after": after, "above": int(n_keyed), "late": n_late, "nulls": n_null}

    def _not_yet_landed(self, table: SourceTable, mark: tuple[int, ...] | None, store: StoreDB | None = None):
        """Source rows below the mark that bronze does not hold yet: those of the lookback window and those with
        a null key (which have no place in the key order). Both are compared with bronze's rows under the same
        predicate, row for row, by multiplicity (bronze's rows of every shard: an order lives on one, so the
        others' rows never match). Returns (DataFrame or None, late keyed rows, null-key rows)."""
        from pyspark.sql import functions as F

        store = store or self.store
        terms = [f"({null_key_sql(table.key)})"]
        window = lookback_sql(table.key, mark, self.lookback)
        if window:
            terms.append(f"({window})")
        where = " OR ".join(terms)
        if not store.query(f"SELECT count(*) FROM {table.name} WHERE {where}")[0][0]:
            return None, 0, 0
        rows = self._jdbc(table, where, store=store)
        name = f"bronze.{table.name}"
        if self.catalog.exists(self.spark, name):
            rows = new_rows_only(rows, self.catalog.read(self.spark, name).where(where), table.column_names)
        rows = rows.transform(pin)
        counts = rows.agg(F.count(F.lit(1)).alias("n"),
                          F.count(F.when(F.expr(null_key_sql(table.key)), F.lit(1))).alias("nulls")).collect()[0]
        n_null = int(counts["nulls"])
        return (rows if counts["n"] else None), int(counts["n"]) - n_null, n_null

    def extract_snapshot(self, table: SourceTable, excel=None):
        """A master table's snapshot, read once: (DataFrame, source's row count, source name, its content
        fingerprint, and (version, rows) of the bronze version that already holds exactly it, else None)."""
        if table.origin == "excel":
            df, expected, source = excel
        else:
            expected = self.store.count(table.name)
            df, source = self._jdbc(table), f"store_db.{table.name}"
        df = df.transform(pin)  # one read of the source, counted and written as the same rows
        fingerprint = content_fingerprint(df, table.column_names).collect()[0]
        return df, expected, source, fingerprint, self._unchanged_snapshot(table, fingerprint)

    def snapshot_loss(self, table: SourceTable, df) -> tuple[int, int, int] | None:
        """(distinct keys of the snapshot bronze holds, how many of them ``df`` lacks, bronze's version), or
        None when bronze holds no snapshot of the table yet."""
        from pyspark.sql import functions as F

        name = f"bronze.{table.name}"
        if not self.catalog.exists(self.spark, name):
            return None
        held = self.catalog.read(self.spark, name)
        if not set(table.key) <= set(held.columns):
            return None
        keyed = F.expr(_not_null_sql(table.key))
        old = held.where(keyed).select(*table.key).distinct()
        new = df.where(keyed).select(*table.key).distinct().withColumn("_kept", F.lit(True))
        row = old.join(new, list(table.key), "left").agg(
            F.count(F.lit(1)).alias("held"), F.count(F.when(F.col("_kept").isNull(), F.lit(1))).alias("lost")
        ).collect()[0]
        return int(row["held"]), int(row["lost"]), self.catalog.version(self.spark, name)

    def guard_snapshots(self, snapshots: dict[str, tuple]) -> None:
        """Fail, before anything is written, when a snapshot lacks more than ``bronze.snapshot_max_loss_percent``
        of the keys bronze holds, unless the table is in ``accept_shrink``."""
        threads = int(self.settings.spark.get("write_threads", 4))
        changed = [n for n, snap in snapshots.items() if snap[4] is None]  # an unchanged snapshot lost nothing
        losses = run_parallel({n: (lambda n=n: self.snapshot_loss(SOURCES[n], snapshots[n][0])) for n in changed},
                              threads)
        refused = []
        for name, loss in losses.items():
            if loss is None or loss[1] == 0:
                continue
            held, lost, version = loss
            what = f"bronze.{name}: the new snapshot lacks {lost:,} of the {held:,} keys ({100 * lost / held:.1f} %) " \
                   f"of the snapshot bronze holds (version {version})"
            if name in self.accept_shrink:
                self.log(f"  warning: {what}: accepted (--accept-shrink {name})")
            elif lost * 100 > held * self.max_loss:
                refused.append(what)
            else:
                self.log(f"  note: {what}, within bronze.snapshot_max_loss_percent ({self.max_loss} %)")
        if refused:
            names = " ".join(f"--accept-shrink {w.split(':')[0].removeprefix('bronze.')}" for w in refused)
            raise SnapshotShrinkError(
                "; ".join(refused) + f": more than bronze.snapshot_max_loss_percent ({self.max_loss} %), so nothing "
                f"was written (a truncated workbook or a half-loaded table?). If those rows were really deleted, "
                f"run again with {names}")

    def read_excel(self, table: SourceTable, result: ReadResult | None = None):
        result = result or read_workbooks(self.settings, [table])[table.name]
        for w in result.warnings:
            self.log(f"  warning: {w}")
        df = local_frame(self.spark, frame_rows(result.frame), table.spark_ddl())
        return df, len(result.frame), f"excel:{result.origin}"

    # landing ------------------------------------------------------------------------------------

    def _unchanged_snapshot(self, table: SourceTable, fingerprint) -> tuple[int, int] | None:
        """(current bronze version, rows it holds) when that version holds exactly the extracted snapshot (equal
        fingerprints over the source columns, computed in this session the same way), else None."""
        name = f"bronze.{table.name}"
        if not self.catalog.exists(self.spark, name):
            return None
        current = self.catalog.read(self.spark, name)
        if not set(table.column_names) <= set(current.columns):
            return None  # a schema change: the overwrite replaces the table
        version = self.catalog.last_commit(self.spark, name)["version"]
        held = content_fingerprint(current, table.column_names).collect()[0]
        return (version, int(held["rows"])) if fingerprint_text(held) == fingerprint_text(fingerprint) else None

    def _land(self, table: SourceTable, df, expected: int, source: str, mode: str,
              before: str | None, after: str | None, started: float, snapshot: tuple | None = None,
              by_shard: dict[str, int] | None = None) -> IngestResult:
        """Check the extraction against the source's count (``by_shard``: each shard's on its own), then commit
        it: nothing is written for a table whose rows do not add up, nor for a snapshot equal to the one bronze
        holds. ``snapshot``: a snapshot's (fingerprint, unchanged) from :meth:`extract_snapshot`, which
        checkpointed its rows."""
        name = f"bronze.{table.name}"
        extracted, fingerprint, unchanged, shard_rows = 0, None, None, None
        if mode == "snapshot":
            fingerprint, unchanged = snapshot
            extracted = int(fingerprint["rows"])
        elif df is not None:
            df = df.transform(pin)  # one read of the source, counted and written as the same rows
            if by_shard is None:
                extracted = df.count()
            else:
                read = {r["_shard"]: int(r["count"]) for r in df.groupBy("_shard").count().collect()}
                shard_rows = {shard: read.get(shard, 0) for shard in by_shard}
                extracted = sum(read.values())
        if by_shard is not None:
            shard_rows = shard_rows or {shard: 0 for shard in by_shard}
            off = [f"{shard} held {n} and {shard_rows[shard]} were read" for shard, n in by_shard.items()
                   if shard_rows[shard] != n]
            if off:
                raise AccountingError(f"bronze.{table.name}: {'; '.join(off)} (did a shard change during the run?); "
                                      "nothing was written for this table: re-run")
        if extracted != expected:
            raise AccountingError(
                f"bronze.{table.name}: the source held {expected} row(s) for this extraction but {extracted} were "
                "read (did the source change during the run?); nothing was written for this table: re-run")
        crashpoints.reached(f"extracted:{name}")
        version, written, held = None, 0, 0
        if unchanged is not None:
            # no commit: the current version already holds the snapshot; the check below is then that it
            # holds as many rows as the source did
            mode, (version, held) = "snapshot-unchanged", unchanged
            if held != expected:
                raise AccountingError(f"bronze.{table.name}: the source held {expected} row(s) but bronze "
                                      f"(version {version}) holds {held}")
        elif mode == "snapshot" or expected > 0:
            if mode == "snapshot":
                commit = self.catalog.overwrite(with_metadata(df, source, self.batch_id, self.now), name)
            else:  # a table landed before bronze had _shard gains it (its older rows read NULL there)
                commit = self.catalog.append(with_metadata(df, source, self.batch_id, self.now), name,
                                             merge_schema=table.name in SHARDED)
            version, written = commit["version"], commit["rows"]
        if mode != "snapshot-unchanged" and written != expected:
            raise AccountingError(f"bronze.{table.name}: {expected} row(s) extracted but the Delta commit "
                                  f"(version {version}) wrote {written}")
        return IngestResult(self.batch_id, table.name, mode, source, expected, written, version,
                            before, after, round(time.monotonic() - started, 2),
                            content_fingerprint=fingerprint_text(fingerprint) if fingerprint else None,
                            shard_rows=shard_rows)

    def _reconcile(self, table: SourceTable, ext: Extraction, res: IngestResult) -> None:
        """Source rows at or below the new mark versus bronze's. Every keyed bronze row is at or below it, so
        bronze's count is the keyed rows it held before this run (counted with the mark) plus the keyed rows
        this run's commit wrote (checked against the commit's metrics in ``_land``)."""
        res.late_rows, res.lookback_orders = ext.late, self.lookback
        if ext.after is None:
            res.source_rows_below_mark = res.bronze_rows_below_mark = res.unreconciled_rows = 0
            return
        below = f"SELECT count(*) FROM {table.name} WHERE {at_or_below_watermark_sql(table.key, ext.after)}"
        res.source_rows_below_mark = sum(int(store.query(below)[0][0]) for _, store in self.sources(table))
        res.bronze_rows_below_mark = ext.keyed_in_bronze + ext.above + ext.late
        res.unreconciled_rows = res.source_rows_below_mark - res.bronze_rows_below_mark

    def land_table(self, table: SourceTable, snapshot=None) -> IngestResult:
        """Extract one table (a master's ``snapshot`` is extracted already) and land it in its own Delta commit (or
        none, for an unchanged snapshot)."""
        started = time.monotonic()
        if not table.incremental:
            df, expected, source, fingerprint, unchanged = snapshot
            res = self._land(table, df, expected, source, "snapshot", None, None, started, (fingerprint, unchanged))
        else:
            ext = self.extract_incremental(table)
            res = self._land(table, ext.df, ext.expected, f"store_db.{table.name}", "incremental",
                             _watermark_text(ext.before), _watermark_text(ext.after), started,
                             by_shard=ext.by_shard)
            self._reconcile(table, ext, res)
            res.seconds = round(time.monotonic() - started, 2)
        if res.mode == "incremental":
            late = f" ({res.late_rows:,} late, from the last {self.lookback:,} order ids)" if res.late_rows else ""
            what = (f"new rows{late}, watermark {res.watermark_before or '-'} -> {res.watermark_after or '-'}, "
                    f"{res.bronze_rows_below_mark:,} of {res.source_rows_below_mark:,} source rows at or below it")
        elif res.mode == "snapshot":
            what = "rows (snapshot)"
        else:
            what = f"rows (snapshot unchanged: version {res.delta_version} kept, nothing written)"
        count = res.source_rows if res.mode == "snapshot-unchanged" else res.rows_written
        if res.shard_rows:
            what += " [" + ", ".join(f"{shard} {n:,}" for shard, n in res.shard_rows.items()) + "]"
        self.log(f"  {table.name:<19} {count:>9,} {what} ({res.seconds:.1f}s)")
        if res.warning:
            self.log(f"  warning: {res.warning}")
        return res

    def run(self, groups: list[str] | None = None, workbooks: dict[str, ReadResult] | None = None
            ) -> list[IngestResult]:
        """Land the tables of ``groups``; ``workbooks``: the workbooks already read (:func:`read_workbooks`)."""
        tables = group_tables(self.settings, groups)
        captured = [t.name for g in groups or list(GROUPS) for t in GROUPS[g] if t not in tables]
        if captured:
            self.log(f"[bronze] {', '.join(captured)}: captured by the stream (cdc.enabled), not extracted")
        self.log(f"[bronze] batch {self.batch_id}: {', '.join(t.name for t in tables)}")
        # read every workbook before writing anything: a bad workbook fails the run up front
        workbooks = workbooks or {}
        excel = {t.name: self.read_excel(t, workbooks.get(t.name)) for t in tables if t.origin == "excel"}
        threads = int(self.settings.spark.get("write_threads", 4))
        if any(t.name in SHARDED for t in tables):
            self.pick_readers()
            self.check_shards()
        # the masters' snapshots first, each read once, and checked against bronze's before any table is written
        snapshots = run_parallel({t.name: (lambda t=t: self.extract_snapshot(t, excel.get(t.name)))
                                  for t in tables if not t.incremental}, threads)
        self.guard_snapshots(snapshots)
        landed = run_parallel({t.name: (lambda t=t: self.land_table(t, snapshots.get(t.name))) for t in tables},
                              threads)
        results = [landed[t.name] for t in tables]
        self.record(results)
        return results

    def pick_readers(self) -> None:
        """Each shard is read from one node for the whole run: its standby when it is up and lags at most
        ``bronze.standby_max_lag_seconds``, else its primary, with a warning (:func:`apparel.shards.pick_reader`)."""
        if not self.shards or self.readers_picked:
            return
        from apparel.shards import pick_reader

        lag = self.settings.bronze.standby_max_lag_seconds
        readers = run_parallel({shard: (lambda shard=shard, store=store: pick_reader(shard, store.url, lag))
                                for shard, store in self.shards}, len(self.shards))
        self.shards = [(shard, StoreDB(readers[shard].url)) for shard, _ in self.shards]
        self.readers_picked = True
        for reader in readers.values():
            lagging = f", {reader.lag_seconds:g} s behind its primary" if reader.lag_seconds is not None else ""
            self.log(f"[bronze] {reader.shard}: reading the {reader.role} {reader.node}{lagging}")
            if reader.warning:
                self.log(f"  warning: {reader.warning}")
                self.warnings.append(reader.warning)

    def check_shards(self) -> None:
        """On a sharded store: raise :class:`ShardError`, before anything is written, when an order id (of an
        order or of a line) is on more than one shard. PostgreSQL's hash partitions route every write through
        the coordinator to one shard; a row written to a shard directly can break that."""
        if not self.shards:
            return
        sql = ("SELECT order_id FROM orders WHERE order_id IS NOT NULL "
               "UNION SELECT order_id FROM order_details WHERE order_id IS NOT NULL")
        held = run_parallel({shard: (lambda store=store: {int(r[0]) for r in store.query(sql)})
                             for shard, store in self.shards}, len(self.shards))
        where: dict[int, list[str]] = {}
        for shard, ids in held.items():
            for order_id in ids:
                where.setdefault(order_id, []).append(shard)
        twice = sorted(i for i, shards in where.items() if len(shards) > 1)
        if twice:
            sample = "; ".join(f"order_id {i} on {' and '.join(where[i])}" for i in twice[:SHARD_SAMPLE])
            raise ShardError(f"bronze: {len(twice):,} order id(s) are on more than one shard ({sample}"
                             f"{', ...' if len(twice) > SHARD_SAMPLE else ''}): an order and its lines belong to one "
                             "shard (written through the coordinator, PostgreSQL routes them by hash of order_id); "
                             "nothing was written")
        self.log(f"[bronze] sharded store: {', '.join(f'{s} {len(ids):,} orders' for s, ids in held.items())}, "
                 "no order id on two shards")

    def record(self, results: list[IngestResult]) -> None:
        """Append the batch's rows to ``ops.ingest_runs``. ``mergeSchema``: a table written before the
        reconciliation columns existed gains them (older rows read NULL there)."""
        names = [col.split()[0] for col in INGEST_RUNS_SCHEMA.split(", ")]
        rows = [tuple({**asdict(r), "ingested_at": self.now}[n] for n in names) for r in results]
        (local_frame(self.spark, rows, INGEST_RUNS_SCHEMA).write.format("delta").mode("append")
         .option("mergeSchema", "true").save(self.catalog.path("ops.ingest_runs")))


def group_tables(settings: Settings, groups: list[str] | None) -> list[SourceTable]:
    """The tables a run of ``groups`` (default: all) lands: with change data capture on, not the captured ones
    (which a sharded store cannot have: :func:`apparel.cdc.refuse_shards`)."""
    if settings.cdc.enabled:
        from apparel.cdc import refuse_shards

        refuse_shards(settings)
    tables = [t for g in groups or list(GROUPS) for t in GROUPS[g]]
    return [t for t in tables if not (settings.cdc.enabled and t.incremental)]


def read_workbooks(settings: Settings, tables: list[SourceTable]) -> dict[str, ReadResult]:
    """Read the workbooks of ``tables`` from the landing area (pandas, no Spark): a missing or unreadable one
    raises its one-line error."""
    out = {}
    for table in tables:
        if table.origin == "excel":
            spec = settings.workbooks[table.name]
            with landing_file(settings, spec["file"]) as path:
                out[table.name] = read_workbook(path, spec["sheet"], table)
    return out


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``bronze_ingest.py [--group store|excel] [--accept-shrink TABLE] [--env ENV]
    [--run-date D]``."""
    parser = argparse.ArgumentParser(prog="bronze_ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--group", action="append", choices=sorted(GROUPS),
                        help="source group(s) to ingest (default: all)")
    parser.add_argument("--accept-shrink", action="append", default=[], metavar="TABLE",
                        help="land this master snapshot even if it lacks more keys than "
                             "bronze.snapshot_max_loss_percent allows")
    parser.add_argument("--env", default=None)
    parser.add_argument("--run-date", default=None,
                        help="logical date (YYYY-MM-DD); accepted like every job's, bronze does not depend on it")
    args = parser.parse_args(argv)
    read: dict[str, ReadResult] = {}

    def workbooks_first(settings: Settings) -> None:
        # before the Spark session: a workbook that has not arrived fails the task in seconds (and each retry)
        read.update(read_workbooks(settings, group_tables(settings, args.group)))

    return run_job(lambda spark, settings: BronzeIngest(spark, settings, accept_shrink=args.accept_shrink).run(
        args.group, read), env=args.env, app_name="apparel-bronze", before_spark=workbooks_first)


if __name__ == "__main__":
    sys.exit(main())
