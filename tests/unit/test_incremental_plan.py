"""The pure parts of the incremental path on literal rows: the SCD2 staged changes (what the silver MERGE
applies) and gold's plan of which marts to rewrite whole and which months to replace. Expectations are worked
out by hand from docs/data_model.md."""

from __future__ import annotations

from datetime import date

from apparel.jobs.gold import MARTS, plan
from apparel.silver import scd2_changes

OPEN_FROM, OPEN_TO = date(1900, 1, 1), date(9999, 12, 31)
INCOMING_DDL = "customer_id BIGINT, name STRING, gender STRING"
DIM_DDL = ("customer_key BIGINT, customer_id BIGINT, name STRING, gender STRING, "
           "valid_from DATE, valid_to DATE, is_current BOOLEAN")
TRACKED = ["name", "gender"]


def changes(spark, current, incoming, effective):
    df = scd2_changes(current, incoming, "customer_id", "customer_key", TRACKED, effective)
    return sorted(tuple(r) for r in df.collect())


def test_scd2_unchanged_snapshot_stages_nothing(spark):
    current = spark.createDataFrame([(1, 10, "Ani", "F", OPEN_FROM, OPEN_TO, True)], DIM_DDL)
    incoming = spark.createDataFrame([(10, "Ani", "F")], INCOMING_DDL)
    assert changes(spark, current, incoming, date(2024, 5, 1)) == []


def test_scd2_change_stages_a_close_and_an_insert(spark):
    current = spark.createDataFrame([(1, 10, "Ani", "F", OPEN_FROM, OPEN_TO, True),
                                     (2, 20, "Budi", "M", OPEN_FROM, OPEN_TO, True)], DIM_DDL)
    incoming = spark.createDataFrame([(10, "Ani Putri", "F"), (20, "Budi", "M")], INCOMING_DDL)
    run = date(2024, 5, 1)
    assert changes(spark, current, incoming, run) == [
        (1, 10, "Ani", "F", OPEN_FROM, run, False, "close", False),
        (3, 10, "Ani Putri", "F", run, OPEN_TO, True, "insert", False),  # after the largest key, 2
    ]


def test_scd2_run_dated_before_the_current_version_closes_it_on_its_own_start(spark):
    # version 2 opened on 2024-05-01; a backfill dated 2024-04-20 brings another change: version 2 is not
    # rewritten, it is closed on 2024-05-01 (empty interval) and the new version opens there too
    opened = date(2024, 5, 1)
    current = spark.createDataFrame([(1, 10, "Ani", "F", OPEN_FROM, opened, False),
                                     (2, 10, "Ani Putri", "F", opened, OPEN_TO, True)], DIM_DDL)
    incoming = spark.createDataFrame([(10, "Ani P", "F")], INCOMING_DDL)
    assert changes(spark, current, incoming, date(2024, 4, 20)) == [
        (2, 10, "Ani Putri", "F", opened, opened, False, "close", True),
        (3, 10, "Ani P", "F", opened, OPEN_TO, True, "insert", False),
    ]


def test_scd2_same_day_change_is_a_correction(spark):
    run = date(2024, 5, 1)
    current = spark.createDataFrame([(2, 10, "Ani Putri", "F", run, OPEN_TO, True)], DIM_DDL)
    incoming = spark.createDataFrame([(10, "Ani P", "F")], INCOMING_DDL)
    assert changes(spark, current, incoming, run) == [(2, 10, "Ani P", "F", run, OPEN_TO, True, "correct", False)]


JAN, FEB, MAR, DEC = date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1), date(2023, 12, 1)


def run(mode="incremental", tables=("silver.fct_order_lines", "silver.fct_orders"), months=(JAN,)):
    return {"mode": mode, "changed_tables": list(tables), "touched_months": list(months)}


def test_plan_nothing_new_is_nothing_to_do():
    assert plan([], full=False) == {}


def test_plan_full_silver_run_or_first_gold_run_rewrites_every_mart():
    assert plan([run("full")], full=False) == {m: "full" for m in MARTS}
    assert plan([], full=True) == {m: "full" for m in MARTS}


def test_plan_new_lines_replace_their_months_and_rewrite_the_global_marts():
    got = plan([run(months=[FEB]), run(months=[DEC, FEB])], full=False)
    assert got == {
        "dm_sales_monthly": [DEC, JAN, FEB, MAR],  # each touched month and the one after it (month over month)
        "dm_product_monthly": [DEC, FEB], "dm_region_monthly": [DEC, FEB], "dm_category_gender_monthly": [DEC, FEB],
        "dm_product_ranking": "full", "dm_customer_rfm": "full", "dm_customer_cohorts": "full",
        "dm_basket_pairs": "full",
    }


def test_plan_a_dimension_change_rewrites_the_marts_that_show_its_labels():
    got = plan([run(tables=["silver.dim_customer"], months=[])], full=False)
    assert got == {"dm_category_gender_monthly": "full", "dm_customer_rfm": "full"}
    got = plan([run(tables=["silver.dim_location"], months=[])], full=False)
    assert got == {"dm_region_monthly": "full"}
