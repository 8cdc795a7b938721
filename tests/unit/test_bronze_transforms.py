"""Bronze's pure pieces on literal rows."""

from datetime import datetime

from apparel.jobs.bronze import (
    above_watermark_sql,
    at_or_below_watermark_sql,
    content_fingerprint,
    fingerprint_text,
    lookback_sql,
    new_rows_only,
    null_key_sql,
    reconciliation_warning,
    with_metadata,
)


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


LINES = [(6999, 28317), (7000, 28317), (7000, 28320), (7000, 28321), (7001, 5), (None, 1), (7002, None),
         (6990, 3), (6991, 3)]


def _keys(spark, where):
    df = spark.createDataFrame(LINES, "order_id BIGINT, order_detail_id BIGINT")
    return sorted(tuple(r) for r in df.where(where).collect())


def test_at_or_below_the_mark_is_the_complement_of_above_among_keyed_rows(spark):
    key, mark = ("order_id", "order_detail_id"), (7000, 28320)
    # keyed rows sorting at or before (7000, 28320); the null-key rows are in neither set
    assert _keys(spark, at_or_below_watermark_sql(key, mark)) == [(6990, 3), (6991, 3), (6999, 28317),
                                                                  (7000, 28317), (7000, 28320)]


def test_lookback_window_is_the_last_n_order_ids_at_or_below_the_mark(spark):
    key, mark = ("order_id", "order_detail_id"), (7000, 28320)
    # 10 order ids: 6991..7000 (6990 is the 11th below), capped at the mark's line
    assert _keys(spark, lookback_sql(key, mark, 10)) == [(6991, 3), (6999, 28317), (7000, 28317), (7000, 28320)]
    assert _keys(spark, lookback_sql(key, mark, 1)) == [(7000, 28317), (7000, 28320)]
    assert lookback_sql(key, mark, 0) is None and lookback_sql(key, None, 10) is None


def test_fingerprint_ignores_row_order_and_sees_every_column(spark):
    ddl = "customer_id BIGINT, first_name STRING, last_name STRING"
    rows = [(1, None, "Tan"), (2, "Ayu", "Lestari"), (2, "Ayu", "Lestari")]

    def fp(data):
        return fingerprint_text(content_fingerprint(spark.createDataFrame(data, ddl),
                                                    ["customer_id", "first_name", "last_name"]).collect()[0])

    assert fp(rows) == fp(list(reversed(rows)))
    assert fp(rows).startswith("rows=3 ")
    assert fp(rows) != fp([(1, "Tan", None)] + rows[1:])   # the same value in another column
    assert fp(rows) != fp(rows[:2])                          # one copy fewer of a duplicated row
    assert fp([]) == "rows=0 xxhash64=0 murmur3=0"


def test_reconciliation_warning_says_which_way_and_the_remedy():
    assert reconciliation_warning("orders", 7000, 7000, "7000") is None
    assert reconciliation_warning("orders", None, None, None) is None
    assert reconciliation_warning("order_details", 18323, 18322, "7010,18335") == (
        "bronze.order_details: the source holds 18,323 row(s) at or below the mark 7010,18335, bronze 18,322: "
        "1 row(s) below the lookback window are not landed; land them with one bronze run with "
        "APPAREL_BRONZE_LOOKBACK_ORDERS=7010")
    assert reconciliation_warning("orders", 6998, 7000, "7000") == (
        "bronze.orders: the source holds 6,998 row(s) at or below the mark 7000, bronze 7,000: bronze holds 2 "
        "row(s) the source no longer has (deleted or edited in the store)")
