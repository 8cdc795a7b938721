"""`apparel.spark.local_frame`: the driver's rows as a relation of the query plan. Each frame is compared with what
PySpark's own `createDataFrame` makes of the same rows (the reference), type-aware, and its plan is read: a
LocalRelation, no scan of an RDD (whose reads run a Python worker per partition)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from apparel.spark import local_frame

DDL = ("id BIGINT, n INT, name STRING, ok BOOLEAN, x DOUBLE, amount DECIMAL(12,2), day DATE, at TIMESTAMP, "
       "at_ntz TIMESTAMP_NTZ, raw BINARY")
ROWS = [
    (1, 7, "Café, 'quoted'", True, 1.5, Decimal("1234.50"), date(2026, 3, 1), datetime(2026, 3, 1, 12, 30, 5, 123456),
     datetime(2026, 3, 1, 0, 0), b"\x00\x01"),
    (2, None, None, None, None, None, None, None, None, None),
    (-3, -1, "", False, -0.0, Decimal("-0.01"), date(1970, 1, 1), datetime(1969, 12, 31, 23, 59, 59),
     datetime(9999, 12, 31, 23, 59, 59), b""),
]


def plan(df) -> str:
    return df._jdf.queryExecution().analyzed().toString()


def test_rows_of_every_flat_type_equal_pysparks_frame_and_stay_in_the_plan(spark):
    ours = local_frame(spark, ROWS, DDL)
    assert "LocalRelation" in plan(ours) and "ExistingRDD" not in plan(ours)
    reference = spark.createDataFrame(ROWS, DDL)
    assert ours.schema == reference.schema
    assertDataFrameEqual(ours, reference)
    # the instants themselves, as Spark shows them in the session's time zone (UTC)
    assert [r["s"] for r in ours.selectExpr("CAST(at AS STRING) AS s").collect()] == \
        ["2026-03-01 12:30:05.123456", None, "1969-12-31 23:59:59"]


def test_dicts_rows_and_no_rows(spark):
    ddl = "k STRING, v BIGINT"
    assertDataFrameEqual(local_frame(spark, [{"k": "a", "v": 1}, Row(k="b", v=2)], ddl),
                         spark.createDataFrame([("a", 1), ("b", 2)], ddl))
    empty = local_frame(spark, [], ddl)
    assert empty.schema == spark.createDataFrame([], ddl).schema and empty.count() == 0


def test_arrays_and_maps_of_flat_values_stay_in_the_plan(spark):
    ddl = ("k STRING, tags ARRAY<STRING>, counts MAP<STRING, BIGINT>, ratios MAP<STRING, DOUBLE>, "
           "months ARRAY<DATE>, at MAP<DATE, TIMESTAMP>")
    rows = [("a", ["x", "y"], {"n": 2, "m": None}, {"r": 0.5}, [date(2026, 3, 1), None],
             {date(2026, 3, 1): datetime(2026, 3, 1, 12, 30, 5, 123456)}),
            ("b", [], {}, None, [], {}),
            ("c", None, None, {}, None, None),
            ("d", ["z", None], {"n": -1}, {"s": -0.0}, [date(1969, 12, 31)], {date(1970, 1, 1): None})]
    ours = local_frame(spark, rows, ddl)
    assert "LocalRelation" in plan(ours) and "ExistingRDD" not in plan(ours)
    reference = spark.createDataFrame(rows, ddl)
    assert ours.schema == reference.schema
    assertDataFrameEqual(ours, reference)
    got = {r["k"]: (r["counts"], r["months"]) for r in ours.collect()}
    assert got == {"a": ({"n": 2, "m": None}, [date(2026, 3, 1), None]), "b": ({}, []), "c": (None, None),
                   "d": ({"n": -1}, [date(1969, 12, 31)])}
    assert [r["s"] for r in ours.selectExpr("CAST(at[DATE'2026-03-01'] AS STRING) AS s").collect()] == \
        ["2026-03-01 12:30:05.123456", None, None, None]


def test_structs_and_collections_of_collections_take_pysparks_path(spark):
    ddl = "k STRING, s STRUCT<a: BIGINT>, nested ARRAY<ARRAY<STRING>>"
    rows = [("a", Row(a=1), [["x"], []])]
    ours = local_frame(spark, rows, ddl)
    assert "LocalRelation" not in plan(ours)
    assertDataFrameEqual(ours, spark.createDataFrame(rows, ddl))


def test_a_value_of_the_wrong_type_is_refused_as_pyspark_refuses_it(spark):
    with pytest.raises(Exception, match="LongType|BIGINT|bigint"):
        local_frame(spark, [("not a number", "a")], "v BIGINT, k STRING")
