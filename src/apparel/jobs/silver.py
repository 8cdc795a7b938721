"""Silver build: bronze -> the data contract -> dimensions and facts at ``<lakehouse>/silver/<table>``.

Inputs: the 7 bronze tables (all batches of orders and order lines, the latest snapshot of the masters),
and the current ``silver.dim_customer``/``silver.dim_product`` (their SCD2 history is carried forward).
Outputs: ``dim_date``, ``dim_customer``, ``dim_product``, ``dim_location``, ``fct_order_lines``
(partitioned by ``order_month``) and ``fct_orders`` (grains in :mod:`apparel.silver`), the rejected rows at
``<lakehouse>/quarantine/<table>`` (the current set, replaced each run) and one accounting row per source
table appended to ``ops.dq_results``. Every table is replaced in one Delta commit, so a run is idempotent
and readers never see half a table. A run whose accounting does not balance fails.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

from apparel.catalog import Catalog, run_parallel
from apparel.config import Settings
from apparel.contract import (TableResult, classify, deduplicate, flag_missing_orders, quarantine_rows,
                              reused_line_ids, valid_rows)
from apparel.errors import AccountingError, SourceError
from apparel.runtime import new_batch_id, parse_run_date, run_job
from apparel.schemas import SOURCES
from apparel.silver import (FCT_ORDER_LINES_COLUMNS, build_dim_date, build_dim_location, build_fct_order_lines,
                            build_fct_orders, customer_attributes, product_attributes, resolve_orders,
                            scd2_merge, with_unknown_member)

# masters first: the orders need the customers and cities, the lines need the surviving orders
CONTRACT_ORDER = ["provinces", "cities", "product_categories", "products", "customers", "orders", "order_details"]


@dataclass
class SilverResult:
    run_id: str
    tables: dict[str, TableResult] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)


def _flag_counts(df, *flags: str) -> dict[str, int]:
    """How many rows have each boolean flag set, in one pass."""
    from pyspark.sql import functions as F

    row = df.agg(*[F.sum(F.col(f).cast("int")).alias(f) for f in flags]).collect()[0]
    return {f: int(row[f] or 0) for f in flags}


class SilverBuild:
    def __init__(self, spark, settings: Settings, run_date: date | None = None, log=print, run_id: str | None = None):
        self.spark = spark
        self.settings = settings
        self.catalog = Catalog(settings)
        self.run_date = run_date or datetime.now(timezone.utc).date()
        self.log = log
        self.threads = int(settings.spark.get("write_threads", 4))
        self.run_id = run_id or new_batch_id(datetime.now(timezone.utc))
        self.result = SilverResult(self.run_id)

    # contract -------------------------------------------------------------------------------------

    def _bronze(self, table: str):
        name = f"bronze.{table}"
        if not self.catalog.exists(self.spark, name):
            raise SourceError(f"{name} does not exist yet: run the bronze layer first (apparel run --layers bronze)")
        return self.catalog.read(self.spark, name)

    def apply_contract(self, table: str, valid_orders=None):
        """Run the contract over one bronze table; return (valid rows, quarantined rows), both materialised."""
        from pyspark.sql import functions as F

        src = SOURCES[table]
        bronze = self._bronze(table)
        res = TableResult(table, rows_read=bronze.count())
        classified = classify(deduplicate(bronze, src.column_names), src)
        if valid_orders is not None:
            classified = flag_missing_orders(classified, valid_orders)
        classified = classified.localCheckpoint()
        counts = classified.groupBy("_reason").agg(F.count(F.lit(1)).alias("n"),
                                                   F.sum(F.col("_copies") - 1).alias("dups")).collect()
        by_reason = {r["_reason"]: int(r["n"]) for r in counts}
        res.rows_written = by_reason.pop(None, 0)
        res.quarantined = dict(sorted(by_reason.items()))
        # counted apart from rows_read, so the accounting identity is a real check
        res.duplicates_removed = sum(int(r["dups"] or 0) for r in counts)
        self.result.tables[table] = res
        return valid_rows(classified, src), quarantine_rows(classified, src)

    def flag_warnings(self, table: str, df, *flags: str) -> None:
        """Count the rows carrying each boolean flag (one pass) and record them as warnings of ``table``:
        flag ``_orphan_city`` becomes warning ``orphan_city``."""
        for flag, n in _flag_counts(df, *flags).items():
            if n:
                warnings = self.result.tables[table].warnings
                warnings[flag.lstrip("_")] = warnings.get(flag.lstrip("_"), 0) + n

    def _current(self, name: str):
        return self.catalog.read(self.spark, name) if self.catalog.exists(self.spark, name) else None

    def run(self) -> SilverResult:
        self.log(f"[silver] run {self.run_id} (effective date {self.run_date})")
        valid, outputs = {}, {}
        # the masters and the orders are independent: run their contracts concurrently; the lines need
        # the surviving orders
        first = run_parallel({t: (lambda t=t: self.apply_contract(t)) for t in CONTRACT_ORDER[:-1]}, self.threads)
        first["order_details"] = self.apply_contract("order_details", first["orders"][0])
        for table in CONTRACT_ORDER:
            valid[table], outputs[f"quarantine.{table}"] = first[table]
            r = self.result.tables[table]
            self.log(f"  contract {table:<19} read {r.rows_read:>7,}  valid {r.rows_written:>7,}  "
                     f"quarantined {r.rows_quarantined:>5,}  duplicates {r.duplicates_removed:>5,}")
        # an empty quarantine that is stored empty already needs no new commit
        for table, r in self.result.tables.items():
            if r.rows_quarantined == 0 and self.catalog.is_empty(self.spark, f"quarantine.{table}"):
                del outputs[f"quarantine.{table}"]

        location = build_dim_location(valid["cities"], valid["provinces"]).localCheckpoint()
        self.flag_warnings("cities", location, "_orphan_province")
        outputs["silver.dim_location"] = location.drop("_orphan_province")

        products = product_attributes(valid["products"], valid["product_categories"]).localCheckpoint()
        self.flag_warnings("products", products, "_orphan_category")
        dim_product = scd2_merge(self._current("silver.dim_product"), products.drop("_orphan_category"),
                                 "product_id", "product_key",
                                 ["product_name", "size", "price", "product_category_id", "category_name"],
                                 self.run_date)
        outputs["silver.dim_product"] = dim_product = with_unknown_member(dim_product, "product_key", {
            "product_name": "Unknown", "product_type": "Unknown", "color": "Unknown", "size": "Unknown",
            "category_name": "Unknown"}).localCheckpoint()

        dim_customer = scd2_merge(self._current("silver.dim_customer"), customer_attributes(valid["customers"]),
                                  "customer_id", "customer_key", ["first_name", "last_name", "gender"], self.run_date)
        outputs["silver.dim_customer"] = dim_customer = with_unknown_member(dim_customer, "customer_key", {
            "first_name": "Unknown", "last_name": "Unknown", "full_name": "Unknown", "gender": "Unknown"}
        ).localCheckpoint()
        outputs["silver.dim_date"] = build_dim_date(valid["orders"])

        orders = resolve_orders(valid["orders"], dim_customer, location, valid["provinces"]).localCheckpoint()
        self.flag_warnings("orders", orders, "_orphan_customer", "_orphan_city", "_orphan_province")
        lines = reused_line_ids(valid["order_details"]).localCheckpoint()
        self.flag_warnings("order_details", lines, "_reused_line_id")
        fct_lines = build_fct_order_lines(lines.drop("_reused_line_id"), orders, dim_product).localCheckpoint()
        self.flag_warnings("order_details", fct_lines, "_orphan_product")
        outputs["silver.fct_order_lines"] = fct_lines.select(*FCT_ORDER_LINES_COLUMNS)
        outputs["silver.fct_orders"] = fct_orders = build_fct_orders(orders, fct_lines).localCheckpoint()
        # the accounting must balance before anything is committed ...
        self.check({"silver.fct_order_lines": fct_lines.count(), "silver.fct_orders": fct_orders.count()})

        # every table in its own atomic commit, several at a time; ... and the commits must hold those rows
        commits = self.catalog.overwrite_all(outputs, {"silver.fct_order_lines": ["order_month"]},
                                             threads=self.threads)
        stored = {name: c["rows"] for name, c in commits.items()}
        self.result.written = {n: v for n, v in stored.items() if n.startswith("silver.")}
        self.check(stored)
        for name in sorted(self.result.written):
            self.log(f"  {name:<28} {self.result.written[name]:>9,} rows")
        for table, r in self.result.tables.items():
            for kind, n in r.warnings.items():
                self.log(f"  warning: {table}: {n:,} row(s) {kind}")
        self.record()
        return self.result

    def check(self, stored: dict[str, int]) -> None:
        """Every row read is written, quarantined or a removed duplicate, and ``stored`` (row counts of the
        built tables, or of their Delta commits) holds exactly the rows that passed: a row lost or doubled
        by a join fails the run."""
        problems = [f"{t}: read {r.rows_read} != written {r.rows_written} + quarantined {r.rows_quarantined}"
                    f" + duplicates {r.duplicates_removed}" for t, r in self.result.tables.items() if not r.balanced]
        expected = {f"quarantine.{t}": r.rows_quarantined for t, r in self.result.tables.items()}
        expected["silver.fct_order_lines"] = self.result.tables["order_details"].rows_written
        expected["silver.fct_orders"] = self.result.tables["orders"].rows_written
        problems += [f"{name} holds {stored[name]} rows, expected {expected[name]}" for name in stored
                     if name in expected and stored[name] != expected[name]]
        if problems:
            raise AccountingError("row accounting does not balance: " + "; ".join(problems))

    def record(self) -> None:
        rows = [(self.run_id, datetime.now(timezone.utc).replace(tzinfo=None), self.run_date, t, r.rows_read,
                 r.rows_written, r.rows_quarantined, r.duplicates_removed, r.quarantined, r.warnings)
                for t, r in self.result.tables.items()]
        schema = ("run_id STRING, run_at TIMESTAMP, run_date DATE, table STRING, rows_read BIGINT, "
                  "rows_written BIGINT, rows_quarantined BIGINT, duplicates_removed BIGINT, "
                  "quarantined_by_reason MAP<STRING, BIGINT>, warnings MAP<STRING, BIGINT>")
        self.catalog.append(self.spark.createDataFrame(rows, schema), "ops.dq_results")


def accounting_lines(spark, catalog: Catalog, run_id: str | None = None) -> list[str]:
    """The row accounting of one silver run (default: the latest), read back from ``ops.dq_results``:
    rows read = written + quarantined + duplicates removed, per source table."""
    from pyspark.sql import functions as F

    if not catalog.exists(spark, "ops.dq_results"):
        return ["no silver run recorded in ops.dq_results yet"]
    results = catalog.read(spark, "ops.dq_results")
    if run_id is None:
        last = results.orderBy(F.col("run_at").desc()).select("run_id").first()
        run_id = last["run_id"] if last else None
    rows = results.where(F.col("run_id") == run_id).orderBy("table").collect() if run_id else []
    if not rows:
        return [f"no accounting rows for silver run {run_id} in ops.dq_results"]
    lines = [f"row accounting of silver run {run_id} (run date {rows[0]['run_date']}), from ops.dq_results:",
             f"  {'table':<19} {'read':>8} = {'written':>8} + {'quarantined':>11} + {'duplicates':>10}  balanced"]
    for r in rows:
        ok = r["rows_read"] == r["rows_written"] + r["rows_quarantined"] + r["duplicates_removed"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((r["quarantined_by_reason"] or {}).items()))
        lines.append(f"  {r['table']:<19} {r['rows_read']:>8,} = {r['rows_written']:>8,} + "
                     f"{r['rows_quarantined']:>11,} + {r['duplicates_removed']:>10,}  {'yes' if ok else 'NO'}"
                     + (f"  ({reasons})" if reasons else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``silver_build.py [--run-date YYYY-MM-DD] [--env ENV]``."""
    parser = argparse.ArgumentParser(prog="silver_build", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None)
    parser.add_argument("--run-date", default=None, help="logical date: the SCD2 effective date (default today)")
    args = parser.parse_args(argv)

    def body(spark, settings):
        result = SilverBuild(spark, settings, parse_run_date(args.run_date)).run()
        for line in accounting_lines(spark, Catalog(settings), result.run_id):
            print(line)

    return run_job(body, env=args.env, app_name="apparel-silver")


if __name__ == "__main__":
    sys.exit(main())
