"""Silver build: bronze -> the data contract -> dimensions and facts at ``<lakehouse>/silver/<table>``.

Inputs: the 7 bronze tables, and the current silver tables (the SCD2 history of ``dim_customer`` and ``dim_product``
is carried forward). Outputs: ``dim_date``, ``dim_customer``, ``dim_product``, ``dim_location``, ``dim_province``,
``fct_order_lines`` (partitioned by ``order_month``) and ``fct_orders`` (grains in :mod:`apparel.silver`), the
rejected rows at ``<lakehouse>/quarantine/<table>``, and in ``ops``: one accounting row per source table
(``dq_results``), the bronze batches consumed (``silver_batches``) and what the run changed (``silver_runs``, which
the gold job reads).

**Incremental** (the default once silver exists). A run reads only what bronze gained since the last run:

- a bronze table whose Delta version did not move is not read; when none moved, nothing is written at all;
- the new rows of ``orders``/``order_details`` are those of batches not yet in ``ops.silver_batches``; their
  ``order_id``s are the run's *scope*. A changed master snapshot adds to the scope the orders of every customer
  and product whose dimension version changed, or every order when provinces or cities changed (they decide
  every order's location);
- the contract runs over every bronze row of the scope (all batches), so its history-dependent rules
  (duplicates, key collisions, missing orders) answer as a full rebuild would; rows with a null key are a
  scope of their own, re-judged together whenever a new one arrives;
- facts and quarantine are updated with one Delta MERGE each that changes only the rows that differ; the SCD2
  dimensions with a MERGE of staged updates (:func:`apparel.silver.scd2_changes`).

**Change data capture** (``cdc.enabled``). The rows of ``orders`` and ``order_details`` are then the *image*
of their change events in ``bronze.cdc_orders``/``bronze.cdc_order_details`` (:mod:`apparel.cdc_events`),
which the stream lands; the new rows of a run are the events of the Delta versions it has not consumed, and
the scope holds the order ids of their rows before and after the change, so an update or a delete re-judges
its order like an insert. The first run on captured tables is a full one (the hand-off, README "Real-time
path"). The masters keep their JDBC snapshots.

``full_refresh`` rebuilds the contract, the facts and the quarantine from all of bronze and replaces them; the
SCD2 dimensions keep their history (bronze holds only the latest snapshot of the masters). Either way, the
accounting must balance over the rows judged (``rows_read = rows_written + rows_quarantined +
duplicates_removed``) and over the whole table after the commit (bronze rows = fact rows + quarantined rows +
duplicates), or the run fails.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from apparel.accounting import accounting_lines
from apparel.catalog import Catalog, run_parallel
from apparel.cdc_events import LITERAL_KEYS, changed_keys, events_for_keys, image
from apparel.config import Settings
from apparel.contract import (
    TableResult,
    classify,
    deduplicate,
    judged,
    quarantine_rows,
    reused_line_ids,
    valid_rows,
)
from apparel.errors import AccountingError, SourceError
from apparel.locks import lakehouse_lock
from apparel.runtime import Steps, new_batch_id, parse_run_date, run_job
from apparel.schemas import SOURCES
from apparel.silver import (
    FCT_ORDER_LINES_COLUMNS,
    build_dim_date,
    build_dim_location,
    build_dim_province,
    build_fct_order_lines,
    build_fct_orders,
    customer_attributes,
    product_attributes,
    resolve_orders,
    scd2_apply,
    scd2_changes,
    with_unknown_member,
)
from apparel.spark import local_frame, pin

MASTERS = ["provinces", "cities", "product_categories", "products", "customers"]
FACTS = ["orders", "order_details"]
# masters first: the orders need the customers and cities, the lines need the surviving orders
CONTRACT_ORDER = MASTERS + FACTS
# a change in these re-resolves every order's location
LOCATION_MASTERS = {"provinces", "cities"}
OUTPUTS = ["silver.dim_date", "silver.dim_customer", "silver.dim_product", "silver.dim_location", "silver.dim_province",
           "silver.fct_order_lines", "silver.fct_orders", *[f"quarantine.{t}" for t in CONTRACT_ORDER]]
FACT_TABLE = {"orders": "silver.fct_orders", "order_details": "silver.fct_order_lines"}
FACT_KEY = {"orders": ["order_id"], "order_details": ["order_id", "order_detail_id"]}

SCD2 = {
    "silver.dim_product": dict(natural_key="product_id", surrogate_key="product_key",
                               tracked=["product_name", "size", "price", "product_category_id", "category_name"],
                               unknown={"product_name": "Unknown", "product_type": "Unknown", "color": "Unknown",
                                        "size": "Unknown", "category_name": "Unknown"}, source="products"),
    "silver.dim_customer": dict(natural_key="customer_id", surrogate_key="customer_key",
                                tracked=["first_name", "last_name", "gender"],
                                unknown={"first_name": "Unknown", "last_name": "Unknown", "full_name": "Unknown",
                                         "gender": "Unknown"}, source="customers"),
}

DQ_SCHEMA = ("run_id STRING, run_at TIMESTAMP, run_date DATE, table STRING, rows_read BIGINT, "
             "rows_written BIGINT, rows_quarantined BIGINT, duplicates_removed BIGINT, "
             "quarantined_by_reason MAP<STRING, BIGINT>, warnings MAP<STRING, BIGINT>, mode STRING, "
             "rows_new BIGINT, duplicates_total BIGINT")
BATCHES_SCHEMA = "table STRING, batch_id STRING, bronze_version BIGINT, run_id STRING, consumed_at TIMESTAMP"
RUNS_SCHEMA = ("seq BIGINT, run_id STRING, run_at TIMESTAMP, run_date DATE, mode STRING, "
               "changed_tables ARRAY<STRING>, touched_months ARRAY<DATE>")


@dataclass
class SilverResult:
    run_id: str
    mode: str = "full"                 # full | incremental | unchanged
    tables: dict[str, TableResult] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)    # table -> rows its commit wrote (or changed)
    changed: list[str] = field(default_factory=list)         # tables that got a new Delta version
    touched_months: list[date] = field(default_factory=list)  # order months whose fact lines changed
    seconds: dict[str, float] = field(default_factory=dict)   # wall-clock seconds per step


@dataclass
class Consumed:
    """What earlier silver runs consumed of one bronze table."""
    version: int
    batches: set[str]


def consumed_batches(spark, catalog: Catalog) -> dict[str, Consumed]:
    """Per bronze table: the version and the batches earlier silver runs consumed (empty: never ran)."""
    from pyspark.sql import functions as F

    if not catalog.exists(spark, "ops.silver_batches"):
        return {}
    rows = catalog.read(spark, "ops.silver_batches").groupBy("table").agg(
        F.max("bronze_version").alias("v"), F.collect_set("batch_id").alias("b")).collect()
    return {r["table"]: Consumed(int(r["v"]), set(r["b"])) for r in rows}


def _flag_counts(df, *flags: str) -> dict[str, int]:
    """How many rows have each boolean flag set, in one pass."""
    from pyspark.sql import functions as F

    row = df.agg(*[F.sum(F.col(f).cast("int")).alias(f) for f in flags]).collect()[0]
    return {f: int(row[f] or 0) for f in flags}


class SilverBuild:
    def __init__(self, spark, settings: Settings, run_date: date | None = None, log=print, run_id: str | None = None,
                 full_refresh: bool = False, whole_table_check: bool = True, alongside=None):
        """``alongside``: a task run concurrently with the final checks and the ``ops`` records once the silver
        tables are committed (the stream refreshes its live mart there); not run when nothing changed."""
        self.spark = spark
        self.alongside = alongside
        self.settings = settings
        self.catalog = Catalog(settings, log=log)
        self.run_date = run_date or datetime.now(timezone.utc).date()
        self.log = log
        self.threads = int(settings.spark.get("write_threads", 4))
        self.run_id = run_id or new_batch_id(datetime.now(timezone.utc))
        self.full_refresh = full_refresh
        self.result = SilverResult(self.run_id)
        self.versions: dict[str, int] = {}
        self.dup_totals: dict[str, int] = {}
        self.judged: dict[str, object] = {}   # the bronze rows each scope judged
        self.events_read: dict[str, object] = {}  # captured tables: the scope's change events
        self.whole_table_check = whole_table_check
        # the bronze table each source table's rows come from: the change events when they are captured
        self.cdc = settings.cdc.enabled
        self.src = {t: f"cdc_{t}" if self.cdc and t in FACTS else t for t in CONTRACT_ORDER}
        self.consumed_versions: dict[str, int] = {}
        self.step = Steps()
        self.result.seconds = self.step.seconds

    # reading ----------------------------------------------------------------------------------------

    def _bronze(self, table: str, version: int | None = None):
        """The bronze rows of ``table`` at the version this run pinned (a concurrent bronze commit waits for the
        next run), or at ``version``: the table itself, or the image of its change events."""
        if self.src[table] != table:
            return image(self._events(table, version), SOURCES[table])
        return self.spark.read.format("delta").option("versionAsOf", self.versions[table]) \
            .load(self.catalog.path(f"bronze.{table}"))

    def _events(self, table: str, version: int | None = None):
        """``bronze.cdc_<table>`` at the pinned version (or ``version``)."""
        return self.spark.read.format("delta").option(
            "versionAsOf", self.versions[table] if version is None else version) \
            .load(self.catalog.path(f"bronze.{self.src[table]}"))

    def _scoped_rows(self, table: str, scope, with_nulls: bool, everything: bool, before: list[str] | None = None):
        """The bronze rows of the scope's orders (and those with a null order id when ``with_nulls``). For a
        captured table, ``before`` (the micro-batches this run consumes) gives the rows as the previous run saw
        them: the image of the same events less those batches' (the scope's events are read once)."""
        from pyspark.sql import functions as F

        if self.src[table] != table:
            events = self._scoped_events(table, scope, with_nulls, everything)
            if before is not None:
                events = events.where(~F.col("_batch_id").isin(before)) if before else events
            rows = image(events, SOURCES[table])
            if everything:
                return rows
        elif everything:
            return self._bronze(table)
        else:
            rows = self._bronze(table)
        inside = rows.join(F.broadcast(scope), "order_id", "left_semi")
        return inside.unionByName(rows.where("order_id IS NULL")) if with_nulls else inside

    def _scoped_events(self, table: str, scope, with_nulls: bool, everything: bool):
        """The change events of the scope's orders at the pinned version, materialised once per run."""
        if table not in self.events_read:
            events = self._events(table)
            if not everything:
                events = events_for_keys(events, self._scope_keys(scope), "order_id", with_nulls)
            self.events_read[table] = events.transform(pin)
        return self.events_read[table]

    def _scope_keys(self, scope):
        """The scope's order ids as a list when they are few (a filter Delta skips files with), else the frame."""
        if not hasattr(self, "_scope_list"):
            few = scope.limit(LITERAL_KEYS + 1).collect()
            self._scope_list = [r[0] for r in few] if len(few) <= LITERAL_KEYS else None
        return scope if self._scope_list is None else self._scope_list

    def _current(self, name: str):
        return self.catalog.read(self.spark, name) if self.catalog.exists(self.spark, name) else None

    def consumed(self) -> dict[str, Consumed]:
        return consumed_batches(self.spark, self.catalog)

    # the contract -----------------------------------------------------------------------------------

    def judge(self, table: str, rows, valid_orders=None, rows_new: int | None = None):
        """Run the contract over ``rows`` (bronze rows of one table); return (valid rows, quarantined rows), both
        materialised, and record the accounting of the rows judged."""
        from pyspark.sql import functions as F

        src = SOURCES[table]
        if rows_new is not None:  # a scope: judged and counted from one materialised read
            rows = rows.transform(pin)
            self.judged[table] = rows
        res = TableResult(table, rows_read=rows.count())
        classified = judged(rows, src, valid_orders).transform(pin)
        counts = classified.groupBy("_reason").agg(F.count(F.lit(1)).alias("n"),
                                                   F.sum(F.col("_copies") - 1).alias("dups")).collect()
        by_reason = {r["_reason"]: int(r["n"]) for r in counts}
        res.rows_written = by_reason.pop(None, 0)
        res.quarantined = dict(sorted(by_reason.items()))
        # counted apart from rows_read, so the accounting identity is a real check
        res.duplicates_removed = sum(int(r["dups"] or 0) for r in counts)
        res.rows_new = res.rows_read if rows_new is None else rows_new
        self.result.tables[table] = res
        return valid_rows(classified, src), quarantine_rows(classified, src)

    def lazy_valid(self, table: str):
        """The valid rows of a master table, as a plan (no accounting): masters that did not change."""
        src = SOURCES[table]
        return valid_rows(classify(deduplicate(self._bronze(table), src.column_names), src), src)

    def flag_warnings(self, table: str, df, *flags: str) -> None:
        """Count the rows carrying each boolean flag (one pass) and record them as warnings of ``table``:
        flag ``_orphan_city`` becomes warning ``orphan_city``."""
        for flag, n in _flag_counts(df, *flags).items():
            if n:
                warnings = self.result.tables[table].warnings
                warnings[flag.lstrip("_")] = warnings.get(flag.lstrip("_"), 0) + n

    def log_contract(self) -> None:
        for table in CONTRACT_ORDER:
            r = self.result.tables.get(table)
            if r is not None:
                self.log(f"  contract {table:<19} read {r.rows_read:>7,}  valid {r.rows_written:>7,}  "
                         f"quarantined {r.rows_quarantined:>5,}  duplicates {r.duplicates_removed:>5,}"
                         + (f"  (new {r.rows_new:,})" if self.result.mode == "incremental" else ""))

    # the run ------------------------------------------------------------------------------------------

    def run(self) -> SilverResult:
        with lakehouse_lock(self.settings, self.log, "silver"):
            return self._run()

    def _run(self) -> SilverResult:
        missing = [self.src[t] for t in CONTRACT_ORDER if not self.catalog.exists(self.spark, f"bronze.{self.src[t]}")]
        if missing:
            how = ("start the stream first (apparel stream start): it lands the captured tables"
                   if missing[0].startswith("cdc_") else "run the bronze layer first (apparel run --layers bronze)")
            raise SourceError(f"bronze.{missing[0]} does not exist yet: {how}")
        with self.step("versions"):
            self.versions = {t: self.catalog.version(self.spark, f"bronze.{self.src[t]}") for t in CONTRACT_ORDER}
            stored = {} if self.full_refresh else self.consumed()
        # what earlier runs consumed, by source table (of the captured tables: their change events)
        consumed = {t: stored[self.src[t]] for t in CONTRACT_ORDER if self.src[t] in stored}
        # a bronze table older than what was consumed was replaced (the events tables after `apparel cdc reset`)
        complete = all(t in consumed and consumed[t].version <= self.versions[t] for t in CONTRACT_ORDER) and all(
            self.catalog.exists(self.spark, n) for n in OUTPUTS)
        if complete and all(consumed[t].version == self.versions[t] for t in CONTRACT_ORDER):
            self.result.mode = "unchanged"
            self.log(f"[silver] run {self.run_id}: no bronze table changed since the last silver run; nothing written")
            return self.result
        self.result.mode = "incremental" if complete else "full"
        why = ("--full-refresh" if self.full_refresh else "first run" if not consumed
               else "a silver table is missing" if complete is False and consumed else "")
        reason = f", {why}" if why and self.result.mode == "full" else ""
        self.log(f"[silver] run {self.run_id} ({self.result.mode}{reason}"
                 f"; effective date {self.run_date})")
        if self.result.mode == "full":
            self._full()
        else:
            self._incremental(consumed)
        for name in sorted(self.result.written):
            self.log(f"  {name:<28} {self.result.written[name]:>9,} rows")
        if not self.result.changed:
            self.log("  no silver or quarantine table changed")
        for table, r in self.result.tables.items():
            for kind, n in r.warnings.items():
                self.log(f"  warning: {table}: {n:,} row(s) {kind}")

        def finish() -> None:
            with self.step("check_totals"):
                self.check_totals()
            with self.step("record"):
                self.record()

        def alongside() -> None:
            with self.step("alongside"):
                self.alongside()

        run_parallel({"finish": finish, **({"alongside": alongside} if self.alongside else {})}, self.threads)
        return self.result

    # masters and dimensions (both modes) -------------------------------------------------------------

    def _masters(self, changed: list[str]) -> tuple[dict, dict, set[str]]:
        """The contract over the master tables in ``changed`` (whole snapshots, they are small); the others
        as plans. Returns (valid rows per master, quarantine frames per changed master, changed dimensions)."""
        judged = run_parallel({t: (lambda t=t: self.judge(t, self._bronze(t))) for t in changed}, self.threads)
        valid = {t: judged[t][0] if t in judged else self.lazy_valid(t) for t in MASTERS}
        quarantine = {t: judged[t][1] for t in judged}
        return valid, quarantine, set()

    def _dimensions(self, valid: dict, changed_masters: list[str]) -> dict[str, object]:
        """Apply the masters to the dimensions; return the natural keys whose SCD2 versions changed
        (``{"customer_id": df, "product_id": df}``), and write ``dim_location`` and ``dim_province`` when they
        differ."""
        tasks = {}
        if {"provinces", "cities"} & set(changed_masters) or not all(
                self.catalog.exists(self.spark, n) for n in ("silver.dim_location", "silver.dim_province")):
            def location():
                dim = build_dim_location(valid["cities"], valid["provinces"]).transform(pin)
                self.flag_warnings("cities", dim, "_orphan_province")
                self._replace_if_different("silver.dim_location", dim.drop("_orphan_province"))
                self._replace_if_different("silver.dim_province", build_dim_province(valid["provinces"]))
            tasks["location"] = location
        if {"products", "product_categories"} & set(changed_masters) or not self.catalog.exists(
                self.spark, "silver.dim_product"):
            def product():
                products = product_attributes(valid["products"], valid["product_categories"]).transform(pin)
                self.flag_warnings("products", products, "_orphan_category")
                return self._apply_scd2("silver.dim_product", products.drop("_orphan_category"))
            tasks["product_id"] = product
        if "customers" in changed_masters or not self.catalog.exists(self.spark, "silver.dim_customer"):
            tasks["customer_id"] = lambda: self._apply_scd2("silver.dim_customer",
                                                            customer_attributes(valid["customers"]))
        # three independent dimensions, each in its own commit: concurrently
        done = run_parallel(tasks, self.threads)
        return {k: v for k, v in done.items() if k != "location"}

    def _apply_scd2(self, name: str, incoming):
        """Stage the SCD2 changes of ``incoming`` and apply them with one Delta MERGE (the table is created on
        the first load); returns the natural keys that changed."""
        from delta.tables import DeltaTable
        from pyspark.sql import functions as F

        spec = SCD2[name]
        sk, nk = spec["surrogate_key"], spec["natural_key"]
        current = self._current(name)
        changes = scd2_changes(current, incoming, nk, sk, spec["tracked"], self.run_date).transform(pin)
        counts = {r["_action"]: (int(r["n"]), int(r["late"] or 0)) for r in changes.groupBy("_action").agg(
            F.count(F.lit(1)).alias("n"), F.sum(F.col("_out_of_order").cast("int")).alias("late")).collect()}
        late = counts.get("close", (0, 0))[1]
        if late:
            warnings = self.result.tables[spec["source"]].warnings
            warnings["out_of_order_run_date"] = warnings.get("out_of_order_run_date", 0) + late
        if current is None:
            dim = with_unknown_member(scd2_apply(None, changes, sk), sk, spec["unknown"])
            self.catalog.overwrite(dim, name)
            self._written(name, self.catalog.last_commit(self.spark, name)["rows"])
        elif counts:
            cols = [c for c in changes.columns if not c.startswith("_")]
            attrs = [c for c in cols if c not in (sk, nk, "valid_from", "valid_to", "is_current")]
            # the declaration, before the MERGE: the new versions' schema and keys, and no key stored already
            inserts = changes.where(F.col("_action") == "insert").select(*cols)
            self.catalog.check(inserts, name)
            self.catalog.check_new_keys(self.spark, name, inserts)
            self.catalog.refuse_stored_drift(self.spark, name, "an SCD2 dimension keeps its history, so migrate "
                                             "it with ALTER TABLE (docs/data_model.md, Migrations)")
            (DeltaTable.forPath(self.spark, self.catalog.path(name)).alias("t")
             .merge(changes.alias("s"), f"t.{sk} = s.{sk} AND s._action <> 'insert'")
             .whenMatchedUpdate(condition="s._action = 'close'",
                                set={"valid_to": "s.valid_to", "is_current": "false"})
             .whenMatchedUpdate(condition="s._action = 'correct'", set={a: f"s.`{a}`" for a in attrs})
             .whenNotMatchedInsert(condition="s._action = 'insert'", values={c: f"s.`{c}`" for c in cols})
             .execute())
            m = self.catalog.last_commit(self.spark, name)["metrics"]
            expected = (sum(n for a, (n, _) in counts.items() if a != "insert"), counts.get("insert", (0, 0))[0])
            got = (int(m.get("numTargetRowsUpdated", 0)), int(m.get("numTargetRowsInserted", 0)))
            if got != expected:
                raise AccountingError(f"{name}: the SCD2 MERGE updated {got[0]} and inserted {got[1]} row(s), "
                                      f"expected {expected[0]} and {expected[1]}")
            self._written(name, sum(got))
        return changes.select(nk).distinct()

    def _replace_if_different(self, name: str, df) -> None:
        """Overwrite a small table only when its content changed (a run with nothing new writes nothing)."""
        df = df.transform(pin)
        current = self._current(name)
        if current is not None and df.columns == current.columns and \
                df.exceptAll(current).isEmpty() and current.exceptAll(df).isEmpty():
            return
        self.catalog.overwrite(df, name)
        self._written(name, self.catalog.last_commit(self.spark, name)["rows"])

    def _written(self, name: str, rows: int) -> None:
        self.result.written[name] = rows
        if name not in self.result.changed:
            self.result.changed.append(name)

    # full rebuild ---------------------------------------------------------------------------------------

    def _full(self) -> None:
        valid, quarantine, _ = self._masters(MASTERS)
        valid["orders"], quarantine["orders"] = self.judge("orders", self._bronze("orders"))
        valid["order_details"], quarantine["order_details"] = self.judge(
            "order_details", self._bronze("order_details"), valid["orders"])
        self.log_contract()
        self._dimensions(valid, MASTERS)
        fct_lines, fct_orders = self._facts(valid)
        self._reused_line_warning(fct_lines, fct_lines.limit(0))
        self.check_scope({"silver.fct_order_lines": fct_lines.count(), "silver.fct_orders": fct_orders.count()})
        outputs = {f"quarantine.{t}": q for t, q in quarantine.items()}
        # an empty quarantine that is stored empty already needs no new commit
        for table, r in self.result.tables.items():
            if r.rows_quarantined == 0 and self.catalog.is_empty(self.spark, f"quarantine.{table}"):
                del outputs[f"quarantine.{table}"]
        outputs["silver.fct_order_lines"] = fct_lines
        outputs["silver.fct_orders"] = fct_orders
        outputs["silver.dim_date"] = build_dim_date(fct_orders)
        commits = self.catalog.overwrite_all(outputs, {"silver.fct_order_lines": ["order_month"]},
                                             threads=self.threads)
        stored = {name: c["rows"] for name, c in commits.items()}
        self.check_scope(stored)
        for name, n in stored.items():
            self._written(name, n)
        for t in FACTS:
            self.dup_totals[t] = self.result.tables[t].duplicates_removed
        self.result.touched_months = sorted(
            r[0] for r in fct_lines.select("order_month").distinct().collect() if r[0] is not None)
        self.batches = {t: self._all_batches(t) for t in FACTS}

    def _all_batches(self, table: str) -> list[str]:
        return [r[0] for r in self._bronze(table).select("_batch_id").distinct().collect()]

    def _facts(self, valid: dict, dims: dict | None = None):
        """Facts of the valid orders and lines given (all of them, or a scope), resolved against the stored
        dimensions; records the orphan and reused-line warnings. ``all_lines``: every valid line after the run,
        for the reused-line-id rule (default: the lines given)."""
        dim_customer = self.catalog.read(self.spark, "silver.dim_customer")
        dim_product = self.catalog.read(self.spark, "silver.dim_product")
        location = self.catalog.read(self.spark, "silver.dim_location")
        orders = resolve_orders(valid["orders"], dim_customer, location, valid["provinces"]).transform(pin)
        self.flag_warnings("orders", orders, "_orphan_customer", "_orphan_city", "_orphan_province",
                           "_city_province_mismatch")
        lines = valid["order_details"]
        fct_lines = build_fct_order_lines(lines, orders, dim_product).transform(pin)
        self.flag_warnings("order_details", fct_lines, "_orphan_product")
        fct_lines = fct_lines.select(*FCT_ORDER_LINES_COLUMNS)
        fct_orders = build_fct_orders(orders, fct_lines).transform(pin)
        return fct_lines, fct_orders

    def _reused_line_warning(self, scope_lines, other_lines) -> None:
        """Warning ``reused_line_id``: lines judged in this run whose order_detail_id also appears in another
        order, among every valid line (``other_lines``: the valid lines outside the scope)."""
        from pyspark.sql import functions as F

        everyone = scope_lines.select("order_id", "order_detail_id", F.lit(True).alias("_scope")).unionByName(
            other_lines.select("order_id", "order_detail_id", F.lit(False).alias("_scope")))
        flagged = reused_line_ids(everyone).where("_scope")
        self.flag_warnings("order_details", flagged, "_reused_line_id")

    def _dim_date(self, new_orders=None, old_orders=None) -> None:
        """``dim_date`` spans the first to the last valid order date: rebuilt when that span moved. Given the
        scope's orders after and before the run, the whole fact table is read only when they could move it: a
        date outside the span, or an order leaving a date at its edge."""
        from pyspark.sql import functions as F

        orders = self.catalog.read(self.spark, "silver.fct_orders")
        dim = build_dim_date(orders)
        if not self.catalog.exists(self.spark, "silver.dim_date"):
            self.catalog.overwrite(dim, "silver.dim_date")
            self._written("silver.dim_date", self.catalog.last_commit(self.spark, "silver.dim_date")["rows"])
            return
        have = self.catalog.read(self.spark, "silver.dim_date").where("date_key <> -1").agg(
            F.min("date"), F.max("date")).collect()[0]
        if new_orders is not None and old_orders is not None and None not in tuple(have):
            day = F.to_date("order_date").alias("d")
            dates = new_orders.select(day, F.lit(True).alias("new")).unionByName(
                old_orders.select(day, F.lit(False).alias("new"))).distinct().collect()
            after = {r["d"] for r in dates if r["new"] and r["d"] is not None}
            gone = {r["d"] for r in dates if not r["new"] and r["d"] is not None} - after
            if all(have[0] <= d <= have[1] for d in after) and not gone & {have[0], have[1]}:
                return
        want = orders.agg(F.min(F.to_date("order_date")), F.max(F.to_date("order_date"))).collect()[0]
        if tuple(want) != tuple(have):
            self.catalog.overwrite(dim, "silver.dim_date")
            self._written("silver.dim_date", self.catalog.last_commit(self.spark, "silver.dim_date")["rows"])

    # incremental ------------------------------------------------------------------------------------------

    def _incremental(self, consumed: dict[str, Consumed]) -> None:
        from pyspark.sql import functions as F

        lap = self.step.lap
        lap("start")
        moved = {t for t in MASTERS if self.versions[t] != consumed[t].version
                 and self._snapshot_changed(t, consumed[t].version)}
        # masters that feed one dimension are judged together (their warnings and joins need both)
        for pair in (LOCATION_MASTERS, {"products", "product_categories"}):
            if moved & pair:
                moved |= pair
        changed_masters = [t for t in MASTERS if t in moved]
        valid, quarantine, _ = self._masters(changed_masters)
        for t in changed_masters:  # a master's quarantine is its whole current set
            self._merge_quarantine(t, quarantine[t], self.catalog.read(self.spark, f"quarantine.{t}"))
        touched = self._dimensions(valid, changed_masters)
        lap("masters")

        # the new rows: batches of the moved fact tables that no silver run consumed yet
        new, self.batches = {}, {}
        for t in FACTS:
            self.consumed_versions[t] = consumed[t].version
            if self.versions[t] == consumed[t].version:
                new[t], self.batches[t] = None, []
                continue
            if self.src[t] != t:
                new[t] = self._new_events(t, consumed[t].version)
            else:
                seen = local_frame(self.spark, [(b,) for b in consumed[t].batches] or [("",)], "_batch_id STRING")
                new[t] = self._bronze(t).join(F.broadcast(seen), "_batch_id", "left_anti") \
                    .select("order_id", "_batch_id").transform(pin)
            self.batches[t] = [r[0] for r in new[t].select("_batch_id").distinct().collect()]

        # the scope: order ids whose rows are judged again, and whether the null-key rows are
        everything = bool(LOCATION_MASTERS & set(changed_masters))
        parts = []
        for t in FACTS:
            if new[t] is not None:
                parts.append(new[t].where("order_id IS NOT NULL").select("order_id"))
        if everything:
            parts = [self._bronze(t).where("order_id IS NOT NULL").select("order_id") for t in FACTS]
        else:
            if "customer_id" in touched:
                parts.append(self._bronze("orders").join(F.broadcast(touched["customer_id"]), "customer_id",
                                                         "left_semi").select("order_id"))
            if "product_id" in touched:
                parts.append(self._bronze("order_details").join(F.broadcast(touched["product_id"]), "product_id",
                                                                "left_semi").select("order_id"))
        scope = None
        for p in parts:
            scope = p if scope is None else scope.unionByName(p)
        scope = (scope.distinct() if scope is not None
                 else local_frame(self.spark, [], "order_id BIGINT")).transform(pin)
        nulls = {t: everything or (new[t] is not None and not new[t].where("order_id IS NULL").isEmpty())
                 for t in FACTS}
        n_new = {t: 0 if new[t] is None else new[t].count() for t in FACTS}
        n_scope = scope.count()
        self.log(f"  scope: {n_scope:,} order id(s){' (every order: a location master changed)' if everything else ''}"
                 f"; new bronze rows: orders {n_new['orders']:,}, order_details {n_new['order_details']:,}")
        lap("scope")
        if n_scope == 0 and not any(nulls.values()):
            return  # nothing to judge: the facts and their quarantine stay as they are

        def scoped(df, with_nulls: bool):
            inside = df if everything else df.join(F.broadcast(scope), "order_id", "left_semi")
            return inside.unionByName(df.where("order_id IS NULL")) if with_nulls and not everything else inside

        # the scope's change events of both captured tables, read at once (judged below, counted again for the
        # duplicates)
        run_parallel({t: (lambda t=t: self._scoped_events(t, scope, nulls[t], everything))
                      for t in FACTS if self.src[t] != t}, self.threads)
        valid["orders"], q_orders = self.judge(
            "orders", self._scoped_rows("orders", scope, nulls["orders"], everything), rows_new=n_new["orders"])
        valid["order_details"], q_lines = self.judge(
            "order_details", self._scoped_rows("order_details", scope, nulls["order_details"], everything),
            valid["orders"], rows_new=n_new["order_details"])
        self.log_contract()
        lap("contract")

        fct_lines, fct_orders = self._facts(valid)
        self.check_scope({"silver.fct_order_lines": fct_lines.count(), "silver.fct_orders": fct_orders.count()})
        lap("facts")
        # the stored rows of the scope, the four tables at once
        old = run_parallel({
            "silver.fct_order_lines": lambda: scoped(self.catalog.read(self.spark, "silver.fct_order_lines"),
                                                     False).transform(pin),
            "silver.fct_orders": lambda: scoped(self.catalog.read(self.spark, "silver.fct_orders"),
                                                False).transform(pin),
            **{t: (lambda t=t: scoped(self.catalog.read(self.spark, f"quarantine.{t}"), nulls[t]).transform(pin))
               for t in FACTS}}, self.threads)
        old_lines, old_orders = old["silver.fct_order_lines"], old["silver.fct_orders"]
        old_q = {t: old[t] for t in FACTS}
        # the reused-line rule needs, outside the scope, only the lines that share a detail id with the scope's
        others = self.catalog.read(self.spark, "silver.fct_order_lines").join(
            F.broadcast(fct_lines.select("order_detail_id").distinct()), "order_detail_id", "left_semi").join(
            F.broadcast(scope), "order_id", "left_anti")
        lap("old_rows")
        self._reused_line_warning(fct_lines, others)
        lap("reused_lines")
        # duplicates over the whole table: the earlier total, less the duplicates the scope's earlier rows held
        # (counted from bronze alone, so a run that failed after its commits cannot skew it), plus the scope's
        def earlier_duplicates(t: str) -> int:
            cols = SOURCES[t].column_names
            if self.src[t] != t:  # the scope's rows as the last run saw them: the image less this run's events
                earlier = self._scoped_rows(t, scope, nulls[t], everything, before=self.batches[t])
            elif self.batches[t]:
                earlier = self.judged[t].where(~F.col("_batch_id").isin(self.batches[t]))
            else:
                earlier = self.judged[t]
            # rows less distinct rows, in one job
            return int(earlier.groupBy(*cols).count().agg(F.sum(F.col("count") - 1)).collect()[0][0] or 0)

        counted = run_parallel({"previous": self._previous_dup_totals,
                                **{t: (lambda t=t: earlier_duplicates(t)) for t in FACTS}}, self.threads)
        for t in FACTS:
            self.dup_totals[t] = counted["previous"].get(t, 0) - counted[t] + self.result.tables[t].duplicates_removed
        lap("duplicates")
        months = (fct_lines.subtract(old_lines).unionByName(old_lines.subtract(fct_lines))
                  .select("order_month").distinct().collect())
        self.result.touched_months = sorted(r[0] for r in months if r[0] is not None)
        lap("months")
        merges = run_parallel({
            "silver.fct_order_lines": lambda: self.catalog.merge_changes(
                "silver.fct_order_lines", fct_lines, old_lines, FACT_KEY["order_details"]),
            "silver.fct_orders": lambda: self.catalog.merge_changes(
                "silver.fct_orders", fct_orders, old_orders, FACT_KEY["orders"]),
            "quarantine.orders": lambda: self._merge_quarantine("orders", q_orders, old_q["orders"]),
            "quarantine.order_details": lambda: self._merge_quarantine("order_details", q_lines,
                                                                       old_q["order_details"]),
        }, self.threads)
        for name, m in merges.items():
            if m and m["version"] is not None:
                self._written(name, m["upserts"] + m["deletes"])
        lap("merges")
        if {"silver.fct_orders"} & set(self.result.changed):
            self._dim_date(fct_orders, old_orders)
        lap("dim_date")

    def _new_events(self, table: str, since: int):
        """The order ids (before and after the change) and micro-batches of the change events landed after
        version ``since`` (Delta's change data feed of the append-only events table)."""
        keyed = changed_keys(self.spark, self.catalog.path(f"bronze.{self.src[table]}"), since,
                             self.versions[table])
        return keyed.transform(pin)

    def _snapshot_changed(self, table: str, old_version: int) -> bool:
        """Whether a master snapshot's rows differ from those at ``old_version`` (a re-landed identical
        snapshot is no change). An old version no longer readable (vacuumed) counts as a change."""
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException

        cols = SOURCES[table].column_names
        try:
            old = self.spark.read.format("delta").option("versionAsOf", old_version) \
                .load(self.catalog.path(f"bronze.{table}")).select(*cols)
            new = self._bronze(table).select(*cols)
            return not (old.exceptAll(new).isEmpty() and new.exceptAll(old).isEmpty())
        except (Py4JJavaError, PySparkException):
            return True

    def _merge_quarantine(self, table: str, new, old) -> dict:
        """Quarantine rows are unique by their source columns (duplicates collapsed): MERGE on all of them."""
        name = f"quarantine.{table}"
        result = self.catalog.merge_changes(name, new, old, SOURCES[table].column_names, null_safe=True)
        if result["version"] is not None and table in MASTERS:
            self._written(name, result["upserts"] + result["deletes"])
        return result

    def _previous_dup_totals(self) -> dict[str, int]:
        from pyspark.sql import functions as F

        if not self.catalog.exists(self.spark, "ops.dq_results"):
            return {}
        dq = self.catalog.read(self.spark, "ops.dq_results")
        if "duplicates_total" not in dq.columns:
            return {}
        # the newest run's total of each table, in one job
        rows = dq.where(F.col("duplicates_total").isNotNull() & F.col("table").isin(FACTS)).groupBy("table").agg(
            F.max_by("duplicates_total", "run_at").alias("n")).collect()
        return {t: 0 for t in FACTS} | {r["table"]: int(r["n"]) for r in rows}

    # checks and records ---------------------------------------------------------------------------------

    def check_scope(self, stored: dict[str, int]) -> None:
        """Every row judged is written, quarantined or a removed duplicate, and ``stored`` (row counts of the
        built fact tables, or of their Delta commits in a full rebuild) holds exactly the rows that passed: a
        row lost or doubled by a join fails the run."""
        problems = [f"{t}: read {r.rows_read} != written {r.rows_written} + quarantined {r.rows_quarantined}"
                    f" + duplicates {r.duplicates_removed}" for t, r in self.result.tables.items() if not r.balanced]
        expected = {f"quarantine.{t}": r.rows_quarantined for t, r in self.result.tables.items()}
        if "order_details" in self.result.tables:
            expected["silver.fct_order_lines"] = self.result.tables["order_details"].rows_written
            expected["silver.fct_orders"] = self.result.tables["orders"].rows_written
        problems += [f"{name} holds {stored[name]} rows, expected {expected[name]}" for name in stored
                     if name in expected and stored[name] != expected[name]]
        if problems:
            raise AccountingError("row accounting does not balance: " + "; ".join(problems))

    def check_totals(self) -> None:
        """After the commits, over whole tables: every bronze row of orders and order lines is a fact row, a
        quarantined row or a removed duplicate."""
        if not self.dup_totals or self.result.mode == "full" or not self.whole_table_check:
            return  # a full run judged every bronze row: check_scope already checked the whole tables
        problems = []
        for t in FACTS:
            bronze = self._bronze(t).count()
            facts = self.catalog.count(self.spark, FACT_TABLE[t])
            quarantined = self.catalog.count(self.spark, f"quarantine.{t}")
            if bronze != facts + quarantined + self.dup_totals[t]:
                problems.append(f"bronze.{t} holds {bronze} rows but {FACT_TABLE[t]} {facts} + quarantine "
                                f"{quarantined} + duplicates {self.dup_totals[t]}")
        if problems:
            raise AccountingError("row accounting does not balance over the whole tables: " + "; ".join(problems))

    def record(self) -> None:
        """Append the run's accounting, the batches it consumed and what it changed to ``ops``."""
        from pyspark.sql import functions as F

        now = datetime.now(timezone.utc).replace(tzinfo=None)
        mode = self.result.mode
        rows = [(self.run_id, now, self.run_date, t, r.rows_read, r.rows_written, r.rows_quarantined,
                 r.duplicates_removed, r.quarantined, r.warnings, mode, r.rows_new, self.dup_totals.get(t))
                for t, r in self.result.tables.items()]
        appends = {"ops.dq_results": lambda: self.catalog.append(
            local_frame(self.spark, rows, DQ_SCHEMA), "ops.dq_results", merge_schema=True)}
        batches = [(t, None, self.versions[t], self.run_id, now) for t in MASTERS]
        for t in FACTS:
            src = self.src[t]
            batches += [(src, b, self.versions[t], self.run_id, now) for b in self.batches.get(t, [])]
            if not self.batches.get(t):  # the version moved without new rows (OPTIMIZE, say): note it
                batches.append((src, None, self.versions[t], self.run_id, now))
        appends["ops.silver_batches"] = lambda: self.catalog.append(
            local_frame(self.spark, batches, BATCHES_SCHEMA), "ops.silver_batches")
        if self.result.changed:
            seq = 1
            if self.catalog.exists(self.spark, "ops.silver_runs"):
                seq = int(self.catalog.read(self.spark, "ops.silver_runs").agg(
                    F.coalesce(F.max("seq"), F.lit(0))).collect()[0][0]) + 1
            run = [(seq, self.run_id, now, self.run_date, mode, sorted(self.result.changed),
                    self.result.touched_months)]
            appends["ops.silver_runs"] = lambda: self.catalog.append(
                local_frame(self.spark, run, RUNS_SCHEMA), "ops.silver_runs")
        run_parallel(appends, self.threads)


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``silver_build.py [--run-date YYYY-MM-DD] [--full-refresh] [--env ENV]``."""
    parser = argparse.ArgumentParser(prog="silver_build", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None)
    parser.add_argument("--run-date", default=None, help="logical date: the SCD2 effective date (default today)")
    parser.add_argument("--full-refresh", action="store_true",
                        help="rebuild the contract, facts and quarantine from all of bronze")
    args = parser.parse_args(argv)

    def body(spark, settings):
        result = SilverBuild(spark, settings, parse_run_date(args.run_date), full_refresh=args.full_refresh).run()
        for line in accounting_lines(spark, Catalog(settings), None if result.mode == "unchanged" else result.run_id):
            print(line)

    return run_job(body, env=args.env, app_name="apparel-silver")


if __name__ == "__main__":
    sys.exit(main())
