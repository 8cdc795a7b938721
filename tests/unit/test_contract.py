"""The bronze -> silver data contract (apparel.contract) on literal rows.

Every expectation is worked out by hand from docs/data_contract.md, never by running the code under test.
Bronze rows carry the source columns plus ``_batch_id``."""

from __future__ import annotations

from datetime import datetime

import pytest

from apparel.contract import classify, deduplicate, flag_missing_orders, quarantine_rows, reused_line_ids, valid_rows
from apparel.schemas import SOURCES

ORDERS = SOURCES["orders"]
LINES = SOURCES["order_details"]
ORDERS_DDL = ORDERS.spark_ddl() + ", _batch_id STRING"
LINES_DDL = LINES.spark_ddl() + ", _batch_id STRING"

T = datetime(2024, 3, 15, 10, 30)  # a valid order date


def _key(row: tuple) -> tuple:
    """Sort key that tolerates nulls: (is_null, value) per column."""
    return tuple((v is None, v) for v in row)


def rows(df) -> list[tuple]:
    return sorted((tuple(r) for r in df.collect()), key=_key)


# --- rule 1: exact duplicates --------------------------------------------------------------------------

def test_deduplicate_keeps_earliest_batch_and_counts_copies(spark):
    bronze = spark.createDataFrame([
        (1, T, 10, 32, 100, "b2"),
        (1, T, 10, 32, 100, "b1"),
        (1, T, 10, 32, 100, "b3"),
        (2, T, 10, 32, 100, "b2"),
        (2, T, 11, 32, 100, "b1"),   # same key, other content: not a duplicate
    ], ORDERS_DDL)
    out = deduplicate(bronze, ORDERS.column_names)
    assert out.columns == [*ORDERS.column_names, "_batch_id", "_copies"]
    assert rows(out) == [
        (1, T, 10, 32, 100, "b1", 3),
        (2, T, 10, 32, 100, "b2", 1),
        (2, T, 11, 32, 100, "b1", 1),
    ]


def test_deduplicate_treats_nulls_as_equal(spark):
    bronze = spark.createDataFrame([
        (3, None, None, 32, 100, "b2"),
        (3, None, None, 32, 100, "b1"),
        (None, T, 10, 32, None, "b4"),
        (None, T, 10, 32, None, "b3"),
        (None, T, 10, 32, None, "b5"),
    ], ORDERS_DDL)
    assert rows(deduplicate(bronze, ORDERS.column_names)) == [
        (3, None, None, 32, 100, "b1", 2),
        (None, T, 10, 32, None, "b3", 3),
    ]


def test_deduplicate_ignores_batch_id_when_comparing(spark):
    """Only the source columns decide equality: the same line landed by two batches is one line."""
    bronze = spark.createDataFrame([
        (1, 100, 5, 2, 500, 1000, "b2"),
        (1, 100, 5, 2, 500, 1000, "b1"),
        (1, 100, 5, 2, 500, 999, "b1"),
    ], LINES_DDL)
    assert rows(deduplicate(bronze, LINES.column_names)) == [
        (1, 100, 5, 2, 500, 999, "b1", 1),
        (1, 100, 5, 2, 500, 1000, "b1", 2),
    ]


# --- rules 2-6 on orders -------------------------------------------------------------------------------

def test_orders_null_key(spark):
    bronze = spark.createDataFrame([
        (None, T, 10, 32, 100, "b1"),
        (1, T, 10, 32, 100, "b1"),
    ], ORDERS_DDL)
    out = classify(bronze, ORDERS)
    assert out.columns == [*ORDERS.column_names, "_batch_id", "_reason"]
    assert rows(out) == [
        (1, T, 10, 32, 100, "b1", None),
        (None, T, 10, 32, 100, "b1", "null_key"),
    ]


@pytest.mark.parametrize("bad_date", [None, datetime(1900, 1, 1), datetime(2100, 1, 1)],
                         ids=["null", "1900-01-01", "2100-01-01"])
def test_orders_invalid_date(spark, bad_date):
    bronze = spark.createDataFrame([
        (1, bad_date, 10, 32, 100, "b1"),
        (2, T, 10, 32, 100, "b1"),
    ], ORDERS_DDL)
    assert rows(classify(bronze, ORDERS)) == [
        (1, bad_date, 10, 32, 100, "b1", "invalid_date"),
        (2, T, 10, 32, 100, "b1", None),
    ]


def test_orders_dates_at_the_edges_of_the_valid_range_pass(spark):
    first, last = datetime(1970, 1, 1, 0, 0, 0), datetime(2099, 12, 31, 23, 59, 59)
    bronze = spark.createDataFrame([
        (1, first, 10, 32, 100, "b1"),
        (2, last, 10, 32, 100, "b1"),
        (3, datetime(1969, 12, 31, 23, 59, 59), 10, 32, 100, "b1"),
    ], ORDERS_DDL)
    assert rows(classify(bronze, ORDERS)) == [
        (1, first, 10, 32, 100, "b1", None),
        (2, last, 10, 32, 100, "b1", None),
        (3, datetime(1969, 12, 31, 23, 59, 59), 10, 32, 100, "b1", "invalid_date"),
    ]


def test_orders_key_collision_marks_every_version(spark):
    bronze = spark.createDataFrame([
        (5, T, 10, 32, 100, "b1"),
        (5, T, 11, 32, 100, "b1"),
        (5, T, 12, 32, 100, "b2"),
        (6, T, 10, 32, 100, "b1"),
    ], ORDERS_DDL)
    assert rows(classify(bronze, ORDERS)) == [
        (5, T, 10, 32, 100, "b1", "key_collision"),
        (5, T, 11, 32, 100, "b1", "key_collision"),
        (5, T, 12, 32, 100, "b2", "key_collision"),
        (6, T, 10, 32, 100, "b1", None),
    ]


def test_orders_a_row_failing_an_earlier_rule_does_not_make_its_key_collide(spark):
    bronze = spark.createDataFrame([
        (7, None, 10, 32, 100, "b1"),   # invalid_date
        (7, T, 11, 32, 100, "b1"),      # the only version that passed rules 2-5: survives
    ], ORDERS_DDL)
    assert rows(classify(bronze, ORDERS)) == [
        (7, T, 11, 32, 100, "b1", None),
        (7, None, 10, 32, 100, "b1", "invalid_date"),
    ]


# --- rules 2-6 on order lines --------------------------------------------------------------------------

GOOD_LINE = (9, 100, 5, 2, 500, 1000, "b1")


@pytest.mark.parametrize("bad_line", [
    (1, 100, 5, 0, 500, 0, "b1"),           # qty 0
    (1, 100, 5, -1, 500, -500, "b1"),       # negative qty
    (1, 100, 5, 1, -1, -1, "b1"),           # negative price
    (1, 100, 5, None, 500, 500, "b1"),      # null qty
    (1, 100, 5, 1, None, 500, "b1"),        # null price
    (1, 100, 5, 2**62, 4, 0, "b1"),         # qty * price = 2^64: beyond BIGINT (ANSI mode would fail the run)
], ids=["qty-0", "qty-negative", "price-negative", "qty-null", "price-null", "amount-overflows"])
def test_lines_invalid_amount(spark, bad_line):
    bronze = spark.createDataFrame([bad_line, GOOD_LINE], LINES_DDL)
    assert rows(classify(bronze, LINES)) == [
        (*bad_line, "invalid_amount"),
        (*GOOD_LINE, None),
    ]


def test_lines_largest_amount_that_fits_a_bigint_is_valid(spark):
    line = (1, 100, 5, 2**62 - 1, 2, 2**63 - 2, "b1")  # 2^63 - 2 <= 2^63 - 1, the largest BIGINT
    assert rows(classify(spark.createDataFrame([line], LINES_DDL), LINES)) == [(*line, None)]


def test_lines_zero_price_is_a_valid_amount(spark):
    bronze = spark.createDataFrame([(1, 100, 5, 3, 0, 0, "b1")], LINES_DDL)
    assert rows(classify(bronze, LINES)) == [(1, 100, 5, 3, 0, 0, "b1", None)]


@pytest.mark.parametrize("unit_sales", [999, 500, None], ids=["wrong-total", "price-not-times-qty", "null"])
def test_lines_amount_mismatch(spark, unit_sales):
    bad_line = (1, 100, 5, 2, 500, unit_sales, "b1")
    bronze = spark.createDataFrame([bad_line, GOOD_LINE], LINES_DDL)
    assert rows(classify(bronze, LINES)) == [
        (*bad_line, "amount_mismatch"),
        (*GOOD_LINE, None),
    ]


def test_lines_key_collision_is_on_order_id_and_line_id(spark):
    bronze = spark.createDataFrame([
        (1, 100, 5, 1, 500, 500, "b1"),
        (1, 100, 5, 2, 500, 1000, "b2"),
        (2, 100, 5, 1, 500, 500, "b1"),
    ], LINES_DDL)
    assert rows(classify(bronze, LINES)) == [
        (1, 100, 5, 1, 500, 500, "b1", "key_collision"),
        (1, 100, 5, 2, 500, 1000, "b2", "key_collision"),
        (2, 100, 5, 1, 500, 500, "b1", None),
    ]


def test_lines_same_line_id_in_two_orders_is_not_a_collision(spark):
    bronze = spark.createDataFrame([
        (1, 100, 5, 1, 500, 500, "b1"),
        (1, 101, 6, 2, 300, 600, "b1"),
    ], LINES_DDL)
    assert rows(classify(bronze, LINES)) == [
        (1, 100, 5, 1, 500, 500, "b1", None),
        (1, 101, 6, 2, 300, 600, "b1", None),
    ]


def test_exact_duplicates_collapse_before_collisions_are_judged(spark):
    """The same line landed twice is a duplicate, not two versions of a key."""
    bronze = spark.createDataFrame([
        (1, 100, 5, 1, 500, 500, "b2"),
        (1, 100, 5, 1, 500, 500, "b1"),
    ], LINES_DDL)
    assert rows(classify(deduplicate(bronze, LINES.column_names), LINES)) == [
        (1, 100, 5, 1, 500, 500, "b1", 2, None),
    ]


@pytest.mark.parametrize("line, reason", [
    ((None, 100, 5, 0, 500, 999, "b1"), "null_key"),          # null key and bad amount
    ((1, None, 5, 1, 500, 999, "b1"), "null_key"),            # null key and mismatch
    ((1, 100, 5, 0, 500, 999, "b1"), "invalid_amount"),       # bad amount and mismatch
], ids=["null_key-over-invalid_amount", "null_key-over-amount_mismatch", "invalid_amount-over-mismatch"])
def test_lines_first_reason_wins(spark, line, reason):
    bronze = spark.createDataFrame([line], LINES_DDL)
    assert rows(classify(bronze, LINES)) == [(*line, reason)]


def test_orders_null_key_wins_over_invalid_date(spark):
    bronze = spark.createDataFrame([(None, datetime(1900, 1, 1), 10, 32, 100, "b1")], ORDERS_DDL)
    assert rows(classify(bronze, ORDERS)) == [(None, datetime(1900, 1, 1), 10, 32, 100, "b1", "null_key")]


# --- rule 7 and the reused-line-id warning ---------------------------------------------------------------

def test_flag_missing_orders(spark):
    lines = spark.createDataFrame([
        (1, 100, 5, 1, 500, 500, "b1", None),
        (2, 200, 5, 1, 500, 500, "b1", None),               # order 200 did not survive
        (3, 200, 5, 0, 500, 0, "b1", "invalid_amount"),     # already rejected: keeps its reason
        (4, 100, 5, 1, 500, 1, "b1", "amount_mismatch"),
    ], LINES_DDL + ", _reason STRING")
    valid_orders = spark.createDataFrame([(100, T, 10, 32, 100, "b1")], ORDERS_DDL)
    out = flag_missing_orders(lines, valid_orders)
    assert out.columns == lines.columns
    assert rows(out) == [
        (1, 100, 5, 1, 500, 500, "b1", None),
        (2, 200, 5, 1, 500, 500, "b1", "missing_order"),
        (3, 200, 5, 0, 500, 0, "b1", "invalid_amount"),
        (4, 100, 5, 1, 500, 1, "b1", "amount_mismatch"),
    ]


def test_reused_line_ids(spark):
    valid = spark.createDataFrame([
        (28317, 6999, 5, 1, 500, 500, "b1"),
        (28317, 7000, 6, 1, 300, 300, "b2"),
        (28318, 7000, 5, 1, 500, 500, "b2"),
        (28319, 7001, 5, 1, 500, 500, "b2"),
    ], LINES_DDL)
    out = reused_line_ids(valid)
    assert out.columns == [*valid.columns, "_reused_line_id"]
    assert rows(out) == [
        (28317, 6999, 5, 1, 500, 500, "b1", True),
        (28317, 7000, 6, 1, 300, 300, "b2", True),
        (28318, 7000, 5, 1, 500, 500, "b2", False),
        (28319, 7001, 5, 1, 500, 500, "b2", False),
    ]


# --- what is stored -------------------------------------------------------------------------------------

def _classified_orders(spark):
    return spark.createDataFrame([
        (1, T, 10, 32, 100, "b1", 1, None),
        (2, None, 10, 32, 100, "b2", 2, "invalid_date"),
        (None, T, 11, 32, 100, "b3", 1, "null_key"),
    ], ORDERS_DDL + ", _copies BIGINT, _reason STRING")


def test_quarantine_rows_are_source_columns_reason_and_batch(spark):
    out = quarantine_rows(_classified_orders(spark), ORDERS)
    assert out.columns == ["order_id", "order_date", "customer_id", "province_id", "city_id", "_reason", "_batch_id"]
    assert rows(out) == [
        (2, None, 10, 32, 100, "invalid_date", "b2"),
        (None, T, 11, 32, 100, "null_key", "b3"),
    ]


def test_valid_rows_are_source_columns_and_batch(spark):
    out = valid_rows(_classified_orders(spark), ORDERS)
    assert out.columns == ["order_id", "order_date", "customer_id", "province_id", "city_id", "_batch_id"]
    assert rows(out) == [(1, T, 10, 32, 100, "b1")]
