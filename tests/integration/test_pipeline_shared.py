"""The whole pipeline on the shared dataset: facts and marts of the session's shared run (the `shared_lake`
fixture) against an independent pandas model. What later runs do (a run with nothing new, new orders, an SCD2
change) is test_incremental.py's story, each step compared whole with a full refresh."""

from __future__ import annotations

import pandas as pd
import pytest
from pyspark.sql import functions as F

import expected_model as em
from apparel.catalog import TABLES, Catalog
from conftest import settings_in

SILVER_GOLD = [n for n in ["silver.dim_date", "silver.dim_customer", "silver.dim_product", "silver.dim_location",
                           "silver.fct_order_lines", "silver.fct_orders"]] + [
    f"gold.{m}" for m in ["dm_sales_monthly", "dm_product_monthly", "dm_product_ranking", "dm_region_monthly",
                          "dm_category_gender_monthly", "dm_customer_rfm", "dm_customer_cohorts", "dm_basket_pairs"]]


@pytest.fixture(scope="module")
def lake(shared_lake, shared_dataset):
    """The session's run of the shared dataset (read-only), and the source files read with pandas."""
    src = em.read_sources(shared_dataset)
    return {"catalog": Catalog(shared_lake.settings), "src": src, "facts": em.fact_lines(src)}


def test_fact_totals_match_the_source_files(spark, lake):
    f = lake["facts"]
    fct = lake["catalog"].read(spark, "silver.fct_order_lines")
    got = fct.agg(F.count(F.lit(1)).alias("n"), F.sum("line_revenue").alias("rev"), F.sum("qty").alias("units"),
                  F.countDistinct("order_id").alias("orders")).collect()[0]
    expected = (len(f), int(f["revenue"].sum()), int(f["qty"].sum()), f["order_id"].nunique())
    assert tuple(got) == expected == (18322, 4_929_880_000, 27611, 7000)
    # every fact row resolves to a real customer and product version (no orphans in this dataset)
    assert fct.where("customer_key = -1 OR product_key = -1 OR city_id = -1").count() == 0
    assert fct.select("order_id", "order_detail_id").distinct().count() == 18322


def test_contract_accounts_for_every_row(spark, lake):
    dq = lake["catalog"].read(spark, "ops.dq_results").toPandas()
    assert len(dq) == 7
    assert (dq.rows_read == dq.rows_written + dq.rows_quarantined + dq.duplicates_removed).all()
    by_table = dq.set_index("table")
    assert by_table.loc["order_details", "rows_read"] == 18322
    assert int(by_table["rows_quarantined"].sum()) == 0
    # order_detail_id 28317 is used by orders 6999 and 7000: kept, and both rows flagged
    reused = lake["src"]["order_details"].order_detail_id.duplicated(keep=False).sum()
    assert dict(by_table.loc["order_details", "warnings"]) == {"reused_line_id": reused} == {"reused_line_id": 2}


def test_sales_monthly(spark, lake):
    expected = em.sales_monthly(lake["facts"])
    assert len(expected) == 12
    em.assert_same(lake["catalog"].read(spark, "gold.dm_sales_monthly"), expected)


def test_sales_live_at_the_datasets_last_order(spark, lake, shared_lake):
    """gold.dm_sales_live of the shared run, whose APPAREL_LIVE_NOW is the dataset's last order time, against
    the spec applied with pandas to the source files; types included."""
    now = shared_lake.settings.live_now
    assert now == lake["src"]["orders"]["order_date"].max()
    expected = em.sales_live(lake["facts"], now)
    # the dataset's orders are all at midnight: the window (2022-11-30 and 2022-12-01) holds one minute
    assert len(expected) == 1 and expected["orders"].sum() == (lake["src"]["orders"]["order_date"] == now).sum()
    live = lake["catalog"].read(spark, "gold.dm_sales_live")
    monthly = dict(lake["catalog"].read(spark, "gold.dm_sales_monthly").dtypes)
    assert live.dtypes == [("minute", "timestamp"), ("orders", "bigint"), ("units", "bigint"),
                           ("revenue", monthly["revenue"]), ("customers", "bigint")]
    got = live.toPandas().sort_values("minute").reset_index(drop=True)
    got["minute"] = got["minute"].astype(expected["minute"].dtype)  # same instant, pandas' resolution
    pd.testing.assert_frame_equal(got, expected, check_dtype=True)


def test_product_ranking(spark, lake):
    em.assert_same(lake["catalog"].read(spark, "gold.dm_product_ranking"),
                   em.product_ranking(lake["facts"], lake["src"]))


def test_region_monthly(spark, lake):
    em.assert_same(lake["catalog"].read(spark, "gold.dm_region_monthly"),
                   em.region_monthly(lake["facts"], lake["src"]))


def test_basket_pairs(spark, lake):
    expected = em.basket_pairs(lake["facts"], lake["src"])
    assert len(expected) == 28  # 8 styles, every pair bought together at least once
    em.assert_same(lake["catalog"].read(spark, "gold.dm_basket_pairs"), expected)


def test_product_monthly(spark, lake):
    expected = em.product_monthly(lake["facts"], lake["src"])
    assert expected["revenue"].sum() == 4_929_880_000 and expected["product_id"].nunique() == 43
    em.assert_same(lake["catalog"].read(spark, "gold.dm_product_monthly"), expected)


def test_category_gender_monthly(spark, lake):
    expected = em.category_gender_monthly(lake["facts"], lake["src"])
    assert set(expected["gender"]) == {"Male", "Female"} and expected["revenue"].sum() == 4_929_880_000
    em.assert_same(lake["catalog"].read(spark, "gold.dm_category_gender_monthly"), expected)


def test_customer_rfm(spark, lake):
    expected = em.customer_rfm(lake["facts"], lake["src"])
    assert expected["orders"].sum() == 7000 and set(expected["r_score"]) <= {1, 2, 3, 4, 5}
    em.assert_same(lake["catalog"].read(spark, "gold.dm_customer_rfm"), expected)


def test_customer_cohorts(spark, lake):
    expected = em.customer_cohorts(lake["facts"])
    # every customer who ordered is in exactly one cohort, active in its first month
    first = expected[expected["months_since_first"] == 0]
    assert (first["active_customers"] == first["cohort_size"]).all()
    assert first["cohort_size"].sum() == lake["facts"]["customer_id"].nunique()
    em.assert_same(lake["catalog"].read(spark, "gold.dm_customer_cohorts"), expected)


def test_last_commit_reads_what_deltas_history_shows(spark, lake):
    """Catalog.last_commit reads the newest commit file itself (no Spark job): for every table of the run it must
    say what Delta's own history(1) says; the time is the writer's clock, not the file's (a few ms apart)."""
    from delta.tables import DeltaTable

    catalog = lake["catalog"]
    names = [n for n in TABLES if catalog.exists(spark, n)]
    assert len(names) >= 30
    for name in names:
        mine = catalog.last_commit(spark, name)
        row = DeltaTable.forPath(spark, catalog.path(name)).history(1).collect()[0]
        delta = {"version": row["version"], "operation": row["operation"],
                 "metrics": dict(row["operationMetrics"] or {})}
        assert {k: mine[k] for k in delta} == delta, name
        assert mine["rows"] == int(delta["metrics"].get("numOutputRows", 0)), name
        assert abs((mine["timestamp"] - row["timestamp"]).total_seconds()) < 5, name


def test_tagged_commit_finds_the_commit_of_its_tag(spark, tmp_path):
    """Catalog.tagged_commit (the stream's look-up of its own append) reads the commit files newest first: it finds
    the newest and an older tagged commit as Delta's history shows them, and nothing beyond ``within``."""
    from delta.tables import DeltaTable

    catalog = Catalog(settings_in(tmp_path))
    path = catalog.path("ops.stream_batches")
    for i in range(4):
        spark.range(i + 1).write.format("delta").mode("append").option("userMetadata", f"tag-{i}").save(path)
    history = {r["userMetadata"]: r for r in DeltaTable.forPath(spark, path).history().collect()}
    for tag in ("tag-3", "tag-1"):
        found = catalog.tagged_commit(spark, "ops.stream_batches", tag)
        assert (found["version"], found["operation"], found["rows"]) == \
            (history[tag]["version"], history[tag]["operation"], int(tag[-1]) + 1)
    assert catalog.tagged_commit(spark, "ops.stream_batches", "tag-0", within=3) is None
    assert catalog.tagged_commit(spark, "ops.stream_batches", "tag-0", within=4)["version"] == 0
    assert catalog.tagged_commit(spark, "ops.stream_batches", "no such tag") is None
