"""The incremental invariant: after any sequence of incremental runs, every silver, quarantine and gold table
equals what a full refresh computes from the same bronze.

Two lakehouses follow the same story. Lakehouse A lands bronze and runs silver and gold incrementally (the
default). Lakehouse B gets a copy of A's bronze after every step and rebuilds silver and gold with
``full_refresh`` on the same run date, while A's run goes on beside it (two threads of the session: two
independent runs on two lakehouses, as the jobs themselves commit to several tables at once). After every step
the two are compared whole and type-aware (``assertDataFrameEqual``'s comparison, each table's two sides read in
one Spark action, four tables at a time), and a few values are checked against what the step did to the source
rows.

The story, on a small generated sample, in four steps: the first run; then new orders in a new month, a late
line for an old order, a duplicate of an already-kept row, a row that makes a kept key collide, null-key rows and
a customer's name change, all in one step (each on rows of its own: a step is two pipeline runs, the suite's
time); a change dated before the version it supersedes (an out-of-order backfill); and a run with nothing new.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime

import pytest
from pyspark.sql import functions as F

from apparel.catalog import TABLES, Catalog, run_parallel
from apparel.jobs.bronze import with_metadata
from apparel.pipeline import run_layers
from apparel.runtime import new_batch_id
from apparel.schemas import SOURCES
from apparel.seed import seed_generated
from apparel.store import StoreDB
from conftest import assert_same_rows, in_parallel, settings_in

COMPARED = sorted(n for n in TABLES if n.split(".")[0] in ("silver", "quarantine", "gold"))


def quiet(_msg):
    pass


@pytest.fixture(scope="module")
def story(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("incremental")
    a = settings_in(root / "a")
    b = settings_in(root / "b", store_db=a.store_db)
    seed_generated(a, scale=0.1, seed=11, log=quiet)
    return {"a": a, "b": b, "ca": Catalog(a), "cb": Catalog(b), "db": StoreDB(a.store_db)}


def versions(spark, catalog) -> dict[str, int | None]:
    return {n: catalog.version(spark, n) for n in COMPARED}


def step(spark, story, run_date: date, land_bronze: bool = True) -> dict:
    """Bronze on A (unless the step wrote bronze itself), then silver+gold incrementally on A and, at the same
    time, by full refresh on B over a copy of A's bronze; returns A's summary."""
    a, b = story["a"], story["b"]
    if land_bronze:
        run_layers(spark, a, ["bronze"], log=quiet, run_date=run_date)
    shutil.rmtree(f"{b.lakehouse}/bronze", ignore_errors=True)
    shutil.copytree(f"{a.lakehouse}/bronze", f"{b.lakehouse}/bronze")
    runs = run_parallel({
        "a": lambda: run_layers(spark, a, ["silver", "gold"], log=quiet, run_date=run_date),
        "b": lambda: run_layers(spark, b, ["silver", "gold"], log=quiet, run_date=run_date, full_refresh=True),
    }, threads=2)
    return runs["a"]


def assert_same(spark, story) -> None:
    """Each compared table of A equals B's: schema (types), rows, in any order (see conftest.assert_same_rows)."""
    in_parallel(COMPARED, lambda name: assert_same_rows(story["ca"].read(spark, name), story["cb"].read(spark, name)))


def append_bronze(spark, story, table: str, df) -> None:
    """Land rows in bronze as a new batch, as a late extraction (the lookback, or change data capture) would."""
    now = datetime(2026, 3, 1, 12, 0, 0)
    with_metadata(df.select(*SOURCES[table].column_names), f"test.{table}", new_batch_id(now), now) \
        .write.format("delta").mode("append").save(story["ca"].path(f"bronze.{table}"))


def silver_mode(spark, catalog) -> str:
    return catalog.read(spark, "ops.silver_runs").orderBy(F.col("seq").desc()).first()["mode"]


def test_first_run_equals_a_full_refresh(spark, story):
    step(spark, story, date(2026, 1, 1))
    assert_same(spark, story)


def test_new_orders_late_rows_collisions_and_a_name_change(spark, story):
    """One step (one incremental run beside one full refresh) with every kind of change at once, each on rows of
    its own, so that each outcome is checked on its own: new orders in a new month (landed from the store), late
    bronze rows (a late line of the oldest order, an exact copy of a kept line, a line without an order id, twice),
    an order row whose key collides with one of the newest kept orders, and a customer's name change."""
    db, ca = story["db"], story["ca"]
    # new orders in the month after the last one, in the store
    last_id, last_date = db.query("SELECT max(order_id), max(order_date) FROM orders")[0]
    last_date = datetime.fromisoformat(str(last_date))
    month = datetime(last_date.year + (last_date.month == 12), last_date.month % 12 + 1, 15)
    db.insert_rows(SOURCES["orders"], [(last_id + 1, month, 3, 1, 1), (last_id + 2, month, 4, 2, 12)])
    db.insert_rows(SOURCES["order_details"], [(900001, last_id + 1, 1, 2, 190000, 380000),
                                              (900002, last_id + 2, 2, 1, 250000, 250000)])
    months_before = ca.read(spark, "gold.dm_sales_monthly").count()
    # late rows in bronze: a late line of the oldest order (below the high-water mark), an exact copy of a kept
    # line, and a line without an order id (twice: one copy is a duplicate)
    lines = ca.read(spark, "bronze.order_details")
    first_order = lines.agg(F.min("order_id")).first()[0]
    kept = lines.where(F.col("order_id") == first_order).limit(1)
    late = kept.withColumn("order_detail_id", F.lit(800001).cast("bigint"))
    orphan = kept.withColumn("order_id", F.lit(None).cast("bigint")).withColumn(
        "order_detail_id", F.lit(800002).cast("bigint"))
    append_bronze(spark, story, "order_details", late.unionByName(kept).unionByName(orphan).unionByName(orphan))
    # an order row whose key collides with a kept order's (another city)
    victim = ca.read(spark, "silver.fct_orders").agg(F.max("order_id")).first()[0] - 5
    assert victim != first_order
    n_lines = ca.read(spark, "silver.fct_order_lines").where(f"order_id = {victim}").count()
    assert n_lines > 0
    other = ca.read(spark, "bronze.orders").where(f"order_id = {victim}").limit(1) \
        .withColumn("city_id", F.col("city_id") + 1)
    append_bronze(spark, story, "orders", other)
    # a customer's new name, in the store
    dim = ca.read(spark, "silver.dim_customer")
    old_key = [r["customer_key"] for r in dim.where("customer_id = 3").collect()]
    assert len(old_key) == 1
    other_keys = {(r["customer_id"], r["customer_key"]) for r in dim.where("customer_id <> 3").collect()}
    with db.connect() as conn:
        conn.cursor().execute("UPDATE customers SET last_name = 'Renamed' WHERE customer_id = 3")

    step(spark, story, date(2026, 2, 1))
    assert_same(spark, story)
    assert silver_mode(spark, ca) == "incremental"
    # the new orders: one new month in the marts, with their figures
    new = ca.read(spark, "gold.dm_sales_monthly").where(F.col("month") == F.lit(month.date().replace(day=1)))
    assert [(r["orders"], r["units"], r["revenue"]) for r in new.collect()] == [(2, 3, 630000)]
    assert ca.read(spark, "gold.dm_sales_monthly").count() == months_before + 1
    # the late rows: the late line kept once, the null-key line quarantined, the copies counted as duplicates
    fct = ca.read(spark, "silver.fct_order_lines")
    assert fct.where(f"order_id = {first_order} AND order_detail_id = 800001").count() == 1
    q = ca.read(spark, "quarantine.order_details").where("order_detail_id = 800002")
    assert [r["_reason"] for r in q.collect()] == ["null_key"]
    dq = ca.read(spark, "ops.dq_results").where("table = 'order_details'").orderBy(F.col("run_at").desc()).first()
    # the 4 late rows and the 2 new orders' lines; the kept copy and the null-key copy are duplicates
    assert (dq["rows_new"], dq["duplicates_removed"] >= 2) == (6, True)
    # the collision: both rows of the key quarantined, and the order's lines with them
    assert ca.read(spark, "silver.fct_orders").where(f"order_id = {victim}").count() == 0
    q = ca.read(spark, "quarantine.orders").where(f"order_id = {victim}")
    assert sorted(r["_reason"] for r in q.collect()) == ["key_collision", "key_collision"]
    ql = ca.read(spark, "quarantine.order_details").where(f"order_id = {victim}")
    assert {r["_reason"] for r in ql.collect()} == {"missing_order"} and ql.count() == n_lines
    # the name change: the old version closed on the run date, a new current one from it, under a new surrogate
    # key above every other; the other customers keep theirs, and the facts keep the version valid at each order
    # (every order of customer 3 is dated before 2026-02-01)
    dim = ca.read(spark, "silver.dim_customer")
    versions = [(r["customer_key"], str(r["valid_from"]), str(r["valid_to"]), r["last_name"] == "Renamed",
                 r["is_current"]) for r in dim.where("customer_id = 3").orderBy("valid_from", "customer_key").collect()]
    assert [v[:1] + v[2:] for v in versions[:1]] == [(old_key[0], "2026-02-01", False, False)]
    assert [v[1:] for v in versions[1:]] == [("2026-02-01", "9999-12-31", True, True)]
    assert versions[1][0] > max(k for _, k in other_keys)
    assert {(r["customer_id"], r["customer_key"]) for r in dim.where("customer_id <> 3").collect()} == other_keys
    keys = fct.where("customer_id = 3").select("customer_key").distinct().collect()
    assert [r[0] for r in keys] == old_key


def test_an_out_of_order_backfill(spark, story):
    """A change dated before the version it supersedes (2026-01-20, after the run of 2026-02-01)."""
    db, ca = story["db"], story["ca"]
    with db.connect() as conn:
        conn.cursor().execute("UPDATE customers SET last_name = 'Renamed Again' WHERE customer_id = 3")
    step(spark, story, date(2026, 1, 20))
    assert_same(spark, story)
    versions_ = [(str(r["valid_from"]), str(r["valid_to"]), r["last_name"], r["is_current"]) for r in
                 ca.read(spark, "silver.dim_customer").where("customer_id = 3").orderBy("customer_key").collect()]
    assert versions_[1:] == [("2026-02-01", "2026-02-01", "Renamed", False),
                             ("2026-02-01", "9999-12-31", "Renamed Again", True)]
    assert versions_[0][1] == "2026-02-01" and not versions_[0][3]
    dq = ca.read(spark, "ops.dq_results").where("table = 'customers'").orderBy(F.col("run_at").desc()).first()
    assert dq["warnings"].get("out_of_order_run_date") == 1


def test_a_run_with_nothing_new_writes_no_version(spark, story):
    ca = story["ca"]
    run_layers(spark, story["a"], ["bronze"], log=quiet, run_date=date(2026, 2, 2))
    before = versions(spark, ca)
    summary = run_layers(spark, story["a"], ["silver", "gold"], log=quiet, run_date=date(2026, 2, 2))
    assert versions(spark, ca) == before
    assert summary["silver_mode"] == "unchanged" or summary["silver"] == {}
    assert summary["gold"] == {}
