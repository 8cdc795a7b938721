"""Property-based tests of the data contract (issue 13, point 10), with hypothesis: random dirty bronze rows of
orders, order lines and customers (nulls, exact duplicates, key collisions, dates at and beyond the valid range,
huge, zero and negative amounts, unicode and whitespace in names) are judged by ``apparel.contract.judged`` on
real Spark, and compared with an oracle written here from docs/data_contract.md, row by row:

- every input row ends in exactly one of: valid, quarantined with one reason, or a removed duplicate (the
  judged rows' ``_copies`` add up to the input rows);
- each distinct row gets the reason the oracle gives it (rules 1-6; rule 7 is tested in test_contract.py);
- judging the valid rows again passes every one of them: running twice changes nothing.

The examples are derandomized (the same on every run) and few: each is a handful of Spark jobs."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apparel.contract import judged
from apparel.schemas import SOURCES

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
RUNS = settings(max_examples=8, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ids = st.sampled_from([None, 1, 2, 3])
batches = st.sampled_from(["b1", "b2"])
dates = st.sampled_from([None, datetime(1900, 1, 1), datetime(1969, 12, 31, 23, 59, 59), datetime(1970, 1, 1),
                         datetime(2024, 5, 1, 10, 30), datetime(2099, 12, 31, 23, 59, 59), datetime(2100, 1, 1)])
quantities = st.sampled_from([None, -1, 0, 1, 2, 2**62, BIGINT_MAX])
prices = st.sampled_from([None, -5, 0, 1, 4, 185_000])
names = st.sampled_from([None, "", "Ani", " Ani", "Ani ", "ANI", "Añi", "Анна", "李", "Ani\u00a0Putri", "😀"])


def _line(draw_id, draw_order, qty, price, sales_kind, sales_other, product, batch):
    product_ = qty * price if (qty is not None and price is not None) else None
    in_range = product_ is not None and BIGINT_MIN <= product_ <= BIGINT_MAX
    sales = {"right": product_ if in_range else None, "null": None, "other": sales_other}[sales_kind]
    return (draw_id, draw_order, product, qty, price, sales, batch)


sales_kinds = st.sampled_from(["right", "right", "null", "other"])
lines_rows = st.lists(st.builds(_line, ids, ids, quantities, prices, sales_kinds, st.sampled_from([0, 1, 7]),
                                st.sampled_from([None, 11, 12]), batches), max_size=14)
orders_rows = st.lists(st.tuples(ids, dates, st.sampled_from([None, 5, 6]), st.sampled_from([1, 2]),
                                 st.sampled_from([10, 20]), batches), max_size=14)
customers_rows = st.lists(st.tuples(ids, names, names, st.sampled_from([None, "Female", "Male"]), batches),
                          max_size=14)


# --- the oracle, from docs/data_contract.md ---------------------------------------------------------------

def oracle(rows: list[tuple], table: str) -> dict[tuple, tuple[str | None, int]]:
    """Distinct source rows (rule 1: exact duplicates, nulls equal, collapse to one) -> (reason or None, copies)."""
    src = SOURCES[table]
    key = [src.column_names.index(k) for k in src.key]
    copies = Counter(r[:-1] for r in rows)  # the batch id is not part of the row's content
    reason: dict[tuple, str | None] = {}
    for r in copies:
        reason[r] = _row_reason(r, table, key)
    passed = Counter(tuple(r[i] for i in key) for r, why in reason.items() if why is None)
    for r, why in reason.items():  # rule 6: a key held by more than one distinct passing row
        if why is None and passed[tuple(r[i] for i in key)] > 1:
            reason[r] = "key_collision"
    return {r: (reason[r], n) for r, n in copies.items()}


def _row_reason(r: tuple, table: str, key: list[int]) -> str | None:
    if any(r[i] is None for i in key):
        return "null_key"
    if table == "orders":
        d = r[1]
        if d is None or d < datetime(1970, 1, 1) or d >= datetime(2100, 1, 1):
            return "invalid_date"
    if table == "order_details":
        qty, price, sales = r[3], r[4], r[5]
        if qty is None or price is None or qty <= 0 or price < 0 or not BIGINT_MIN <= qty * price <= BIGINT_MAX:
            return "invalid_amount"
        if sales != qty * price:
            return "amount_mismatch"
    return None


# --- the properties ------------------------------------------------------------------------------------

def check(spark, rows: list[tuple], table: str) -> None:
    src = SOURCES[table]
    ddl = src.spark_ddl() + ", _batch_id STRING"
    out = judged(spark.createDataFrame(rows, ddl), src).select(*src.column_names, "_reason", "_copies").collect()
    got = {tuple(r[:-2]): (r["_reason"], r["_copies"]) for r in out}
    assert len(got) == len(out), "a distinct row came out twice"
    # each input row in exactly one outcome: the copies add up, and valid + quarantined + duplicates = read
    assert sum(n for _, n in got.values()) == len(rows)
    valid = sum(1 for why, _ in got.values() if why is None)
    quarantined = sum(1 for why, _ in got.values() if why is not None)
    assert valid + quarantined + sum(n - 1 for _, n in got.values()) == len(rows)
    assert got == oracle(rows, table)
    # running twice changes nothing: the valid rows, judged again, all pass, once each
    again_rows = [(*r, "b3") for r, (why, _) in got.items() if why is None]
    if again_rows:
        again = judged(spark.createDataFrame(again_rows, ddl), src).select(*src.column_names, "_reason", "_copies")
        assert sorted(((tuple(r[:-2]), r["_reason"], r["_copies"]) for r in again.collect()), key=repr) == \
            sorted(((r[:-1], None, 1) for r in again_rows), key=repr)


@RUNS
@given(rows=lines_rows)
def test_order_lines_each_end_in_one_outcome_as_the_contract_says(spark, rows):
    check(spark, rows, "order_details")


@RUNS
@given(rows=orders_rows)
def test_orders_each_end_in_one_outcome_as_the_contract_says(spark, rows):
    check(spark, rows, "orders")


@RUNS
@given(rows=customers_rows)
def test_customers_with_unicode_and_whitespace_each_end_in_one_outcome(spark, rows):
    check(spark, rows, "customers")
