"""The data contract between bronze and silver, as pure DataFrame -> DataFrame functions.

Every row a run reads from bronze is accounted for. Rules apply in this order and a row takes the first
reason that fits (docs/data_contract.md has the full text):

1. exact duplicates (equal in every source column) collapse to one      -> duplicates_removed
2. ``null_key``        a key column is null                              -> quarantine
3. ``invalid_date``    order_date missing or outside 1970..2099          -> quarantine
4. ``invalid_amount``  qty <= 0 or item_price < 0 (or either missing, or -> quarantine
                       their product beyond BIGINT)
5. ``amount_mismatch`` unit_sales != qty * item_price                    -> quarantine
6. ``key_collision``   the same key with different content: every version -> quarantine
                       (order lines: the key is (order_id, order_detail_id); the same order_detail_id in
                       different orders is kept, with warning ``reused_line_id``)
7. ``missing_order``   an order line whose order is not among the surviving orders -> quarantine
8. orphan foreign keys: kept, pointed at the dimension's unknown member, warning ``orphan_<dimension>``
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from apparel.schemas import SourceTable

MIN_VALID_DATE = "1970-01-01"
MAX_VALID_DATE = "2100-01-01"  # exclusive


@dataclass
class TableResult:
    """What the contract did with one bronze table."""

    table: str
    rows_read: int = 0
    rows_written: int = 0
    duplicates_removed: int = 0
    rows_new: int = 0         # rows first seen by this run (the rest were judged again, for their scope)
    quarantined: dict[str, int] = field(default_factory=dict)
    warnings: dict[str, int] = field(default_factory=dict)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.quarantined.values())

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.rows_written + self.rows_quarantined + self.duplicates_removed


def deduplicate(df: DataFrame, columns: list[str]) -> DataFrame:
    """Collapse rows equal in every one of ``columns`` (nulls equal) to one, keeping the earliest batch;
    ``_copies`` says how many rows each survivor stands for."""
    w = Window.partitionBy(*columns)
    ranked = df.withColumn("_dup_rank", F.row_number().over(w.orderBy(F.col("_batch_id").asc_nulls_last()))) \
               .withColumn("_copies", F.count(F.lit(1)).over(w))
    return ranked.where("_dup_rank = 1").drop("_dup_rank")


def _row_rule(table: SourceTable) -> Column:
    """Rules 2-5 as one CASE: the first reason that fits, or null."""
    cols = set(table.column_names)
    rule = F.when(reduce(operator.or_, [F.col(k).isNull() for k in table.key]), F.lit("null_key"))
    if "order_date" in cols:
        d = F.col("order_date")
        rule = rule.when(d.isNull() | (d < F.lit(MIN_VALID_DATE).cast("timestamp"))
                         | (d >= F.lit(MAX_VALID_DATE).cast("timestamp")), F.lit("invalid_date"))
    if {"qty", "item_price"} <= cols:
        q, p = F.col("qty"), F.col("item_price")
        # try_multiply: null when the product overflows BIGINT (plain * fails the whole run under ANSI mode),
        # so a line whose amount cannot be computed is quarantined, and silver.line_revenue never overflows
        total = F.try_multiply(q, p)
        rule = rule.when(q.isNull() | p.isNull() | (q <= 0) | (p < 0) | total.isNull(), F.lit("invalid_amount"))
        if "unit_sales" in cols:
            rule = rule.when(~F.col("unit_sales").eqNullSafe(total), F.lit("amount_mismatch"))
    return rule


def classify(df: DataFrame, table: SourceTable) -> DataFrame:
    """Add ``_reason`` (rules 2-6) to de-duplicated bronze rows; null means the row passes."""
    df = df.withColumn("_reason", _row_rule(table))
    # rule 6: among rows that passed 2-5, a key held by more than one (distinct) row is a collision
    passed = F.col("_reason").isNull()
    versions = F.sum(F.when(passed, 1).otherwise(0)).over(Window.partitionBy(*table.key))
    return df.withColumn("_reason", F.when(passed & (versions > 1), F.lit("key_collision"))
                         .otherwise(F.col("_reason")))


def flag_missing_orders(lines: DataFrame, valid_orders: DataFrame) -> DataFrame:
    """Rule 7: a line that passed so far but whose order did not survive gets ``missing_order``."""
    known = valid_orders.select(F.col("order_id").alias("_known_order")).distinct()
    joined = lines.join(known, lines["order_id"] == known["_known_order"], "left")
    return joined.withColumn(
        "_reason", F.when(F.col("_reason").isNull() & F.col("_known_order").isNull(), F.lit("missing_order"))
        .otherwise(F.col("_reason"))).drop("_known_order")


def judged(rows: DataFrame, table: SourceTable, valid_orders: DataFrame | None = None) -> DataFrame:
    """Rules 1-7 over bronze rows of one table: de-duplicated rows with ``_reason`` (null: the row passes) and
    ``_copies``. ``valid_orders``: the surviving orders, for order lines (rule 7)."""
    classified = classify(deduplicate(rows, table.column_names), table)
    return flag_missing_orders(classified, valid_orders) if valid_orders is not None else classified


def reused_line_ids(valid_lines: DataFrame) -> DataFrame:
    """Valid lines with ``_reused_line_id``: their order_detail_id also appears in another order."""
    orders_per_id = F.size(F.collect_set("order_id").over(Window.partitionBy("order_detail_id")))
    return valid_lines.withColumn("_reused_line_id", orders_per_id > 1)


def quarantine_rows(classified: DataFrame, table: SourceTable) -> DataFrame:
    """The quarantined rows as stored: source columns, ``_reason``, ``_batch_id``."""
    return classified.where(F.col("_reason").isNotNull()).select(*table.column_names, "_reason", "_batch_id")


def valid_rows(classified: DataFrame, table: SourceTable) -> DataFrame:
    return classified.where(F.col("_reason").isNull()).select(*table.column_names, "_batch_id")
