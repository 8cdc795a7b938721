"""Bronze's pure pieces on literal rows."""

from datetime import datetime

from apparel.jobs.bronze import above_watermark_sql, new_rows_only, null_key_sql, with_metadata


def test_watermark_predicate_single_key():
    assert above_watermark_sql(("order_id",), None) == "order_id IS NOT NULL"
    assert above_watermark_sql(("order_id",), (7000,)) == "order_id IS NOT NULL AND ((order_id > 7000))"


def test_watermark_predicate_is_lexicographic_on_composite_key():
    sql = above_watermark_sql(("order_id", "order_detail_id"), (7000, 28320))
    assert sql == ("order_id IS NOT NULL AND order_detail_id IS NOT NULL AND "
                   "((order_id > 7000) OR (order_id = 7000 AND order_detail_id > 28320))")
    assert null_key_sql(("order_id", "order_detail_id")) == "order_id IS NULL OR order_detail_id IS NULL"


def test_watermark_predicate_selects_the_right_rows(spark):
    rows = [(6999, 28317), (7000, 28317), (7000, 28320), (7000, 28321), (7001, 5), (None, 1), (7002, None)]
    df = spark.createDataFrame(rows, "order_id BIGINT, order_detail_id BIGINT")
    got = df.where(above_watermark_sql(("order_id", "order_detail_id"), (7000, 28320))).collect()
    assert sorted(tuple(r) for r in got) == [(7000, 28321), (7001, 5)]


def test_new_rows_only_is_null_safe(spark):
    cols = "order_id BIGINT, customer_id BIGINT"
    candidates = spark.createDataFrame([(None, 1), (None, 2), (None, None)], cols)
    landed = spark.createDataFrame([(None, 1), (None, None)], cols)
    got = new_rows_only(candidates, landed, ["order_id", "customer_id"]).collect()
    assert [tuple(r) for r in got] == [(None, 2)]


def test_with_metadata_adds_lineage_columns(spark):
    df = spark.createDataFrame([(1, "BALI")], "province_id BIGINT, province_names STRING")
    at = datetime(2026, 1, 2, 3, 4, 5)
    out = with_metadata(df, "excel:provinces.xlsx#Sheet1", "b1", at)
    assert out.columns == ["province_id", "province_names", "_ingested_at", "_source", "_batch_id"]
    assert [tuple(r) for r in out.collect()] == [(1, "BALI", at, "excel:provinces.xlsx#Sheet1", "b1")]
