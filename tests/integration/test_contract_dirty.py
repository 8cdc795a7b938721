"""A dirty dataset made here, exercising every contract rule at least once.

The clean part comes from the project's generator; the test then adds known bad rows to the files, so the
expected quarantine reasons and counts, and the rows that must survive, are known by construction. Gold is
compared with the pandas model over exactly those surviving rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

import expected_model as em
from apparel.catalog import Catalog
from apparel.errors import SnapshotShrinkError
from apparel.generator import generate
from apparel.jobs.bronze import BronzeIngest
from apparel.pipeline import run_layers
from apparel.seed import seed_dataset
from conftest import in_parallel, settings_in

TS = "2022-05-01 10:00:00.000"


def _append(df: pd.DataFrame, rows: list[dict]) -> pd.DataFrame:
    return pd.concat([df, pd.DataFrame(rows)], ignore_index=True)


def build_dirty(folder):
    """Write the dirty dataset; return (expected quarantine, duplicates, warnings, surviving frames)."""
    generate(folder, scale=0.1, seed=11)
    src = {k: v.copy() for k, v in em.read_sources(folder).items()}
    orders = pd.read_csv(folder / "orders.csv", dtype=str)          # keep the text as written
    lines = pd.read_csv(folder / "order_details.csv")
    customers, products = src["customers"], src["products"]
    max_o, max_l = int(orders.order_id.astype(int).max()), int(lines.order_detail_id.max())
    c1, c2 = int(customers.customer_id.iloc[0]), int(customers.customer_id.iloc[1])
    city = src["cities"].iloc[0]
    p1 = products.iloc[0]
    o = lambda oid, cust=c1, when=TS, city_id=int(city.city_id), prov=int(city.province_id): {  # noqa: E731
        "order_id": oid, "order_date": when, "customer_id": cust, "province_id": prov, "city_id": city_id}
    ln = lambda lid, oid, qty=1, price=int(p1.price), sales=None, pid=int(p1.product_id): {  # noqa: E731
        "order_detail_id": lid, "order_id": oid, "product_id": pid, "qty": qty, "item_price": price,
        "unit_sales": qty * price if sales is None else sales}

    A, B, C, D, E, F_, G, H, I_ = (max_o + i for i in range(1, 10))
    # a province other than the city's: the order says it is there, the city workbook says otherwise
    other_prov = int(src["provinces"].province_id[src["provinces"].province_id != city.province_id].iloc[0])
    dirty_orders = [
        o(A), o(A),                                   # exact duplicate: one copy survives
        o(None),                                      # null_key
        o(B, when="2022-13-45 00:00:00.000"),         # not a date: loads as NULL -> invalid_date
        o(C, when="1900-01-01 00:00:00.000"),         # invalid_date (out of range)
        o(D, cust=c1), o(D, cust=c2),                 # key_collision: both versions
        o(E, cust=987654),                            # orphan_customer (kept)
        o(F_, city_id=987654),                        # orphan_city (kept, under its own province)
        o(I_, prov=other_prov),                       # city_province_mismatch (kept, under the order's province)
        o(G), o(H),                                   # clean carriers for line cases
    ]
    orders = _append(orders, [{k: (None if v is None else str(v)) for k, v in r.items()} for r in dirty_orders])
    L = max_l
    dirty_lines = [
        ln(L + 1, A), ln(L + 1, A),                   # exact duplicate
        ln(None, A),                                  # null_key (order_detail_id)
        ln(L + 2, G, qty=0),                          # invalid_amount
        ln(L + 3, G, price=-5),                       # invalid_amount
        ln(L + 4, G, qty=2, sales=1),                 # amount_mismatch
        ln(L + 5, G, qty=1), ln(L + 5, G, qty=2),     # key_collision on (order_id, order_detail_id)
        ln(L + 6, B),                                 # order B is quarantined -> missing_order
        ln(L + 7, D),                                 # order D collided -> missing_order
        ln(L + 8, 99_999_999),                        # missing_order
        ln(L + 9, H, pid=987654, price=1000),         # orphan_product (kept)
        ln(L + 10, E), ln(L + 11, F_),                # lines of the orphan orders (kept)
        ln(L + 13, I_, qty=3),                        # the mismatched order's line (kept)
        ln(L + 14, G, qty=2**62, price=4, sales=0),   # qty x price beyond BIGINT: invalid_amount, not a crash
        ln(int(lines.order_detail_id.iloc[0]), H),    # reused_line_id: same id, another order (kept)
    ]
    lines = _append(lines, dirty_lines)
    customers = _append(customers, [
        {"customer_id": 900001, "first_name": "Ada", "last_name": "One", "gender": "Female"},  # key_collision
        {"customer_id": 900001, "first_name": "Ada", "last_name": "Two", "gender": "Female"},  # key_collision
        {"customer_id": None, "first_name": "No", "last_name": "Key", "gender": "Female"},  # null_key
        {"customer_id": int(customers.customer_id.iloc[2]), **{k: customers.iloc[2][k] for k in
                                                               ("first_name", "last_name", "gender")}},  # duplicate
    ])
    customers["customer_id"] = customers["customer_id"].astype("Int64")
    products = _append(products, [{"product_id": 500, "product_name": "Hoodie Green", "size": "M",
                                   "price": 185000, "product_category_id": 77}])       # orphan_category (kept)
    lines = _append(lines, [ln(L + 12, H, pid=500, price=185000)])

    cities = _append(src["cities"], [{"city_id": 9001, "city_names": "KOTA BARU", "province_id": 987654}])
    cities.to_excel(folder / "cities.xlsx", sheet_name="Worksheet", index=False)  # orphan_province (kept)
    orders.to_csv(folder / "orders.csv", index=False)
    lines.astype({c: "Int64" for c in lines.columns}).to_csv(folder / "order_details.csv", index=False)
    customers.to_parquet(folder / "customers.parquet", index=False)
    products.to_json(folder / "products.json", orient="columns")

    quarantine = {
        "orders": {"null_key": 1, "invalid_date": 2, "key_collision": 2},
        "order_details": {"null_key": 1, "invalid_amount": 3, "amount_mismatch": 1, "key_collision": 2,
                          "missing_order": 3},
        "customers": {"null_key": 1, "key_collision": 2},
    }
    duplicates = {"orders": 1, "order_details": 1, "customers": 1}
    warnings = {"orders": {"orphan_customer": 1, "orphan_city": 1, "city_province_mismatch": 1}, "order_details": {
        "orphan_product": 1, "reused_line_id": 2}, "products": {"orphan_category": 1},
        "cities": {"orphan_province": 1}}

    # the rows that must survive, in pandas terms
    good_orders = orders.dropna(subset=["order_id"]).astype({"order_id": int})
    good_orders = good_orders[~good_orders.order_id.isin([B, C, D])].drop_duplicates()
    good_orders = good_orders.astype({"customer_id": int, "province_id": int, "city_id": int})
    good_orders["order_date"] = pd.to_datetime(good_orders["order_date"])
    bad_line_ids = {L + 2, L + 3, L + 4, L + 5, L + 6, L + 7, L + 8, L + 14}
    good_lines = lines.dropna(subset=["order_detail_id"]).astype(int)
    good_lines = good_lines[~good_lines.order_detail_id.isin(bad_line_ids)].drop_duplicates()
    survivors = dict(src, cities=cities, orders=good_orders, order_details=good_lines,
                     customers=customers[customers.customer_id.notna()
                                         & (customers.customer_id != 900001)].drop_duplicates(),
                     products=products)
    return quarantine, duplicates, warnings, survivors


@pytest.fixture(scope="module")
def dirty(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dirty_src")
    quarantine, duplicates, warnings, survivors = build_dirty(folder)
    settings = settings_in(tmp_path_factory.mktemp("dirty_lake"))
    report = seed_dataset(settings, folder, log=lambda m: None)
    summary = run_layers(spark, settings, ["bronze", "silver", "gold"], log=lambda m: None, run_date=date(2026, 1, 1))
    return {"settings": settings, "catalog": Catalog(settings), "summary": summary, "seed": report,
            "quarantine": quarantine, "duplicates": duplicates, "warnings": warnings, "survivors": survivors}


def test_seed_reports_the_unparseable_date(dirty):
    assert dirty["seed"].warnings == ["orders.csv: 1 order_date value(s) are not valid timestamps and load as NULL"]


def test_quarantine_reasons_and_counts(spark, dirty):
    catalog = dirty["catalog"]

    def check(table: str) -> None:
        q = catalog.read(spark, f"quarantine.{table}")
        got = {r["_reason"]: r["n"] for r in q.groupBy("_reason").agg(F.count(F.lit(1)).alias("n")).collect()}
        assert got == dirty["quarantine"].get(table, {}), table
        assert q.where("_batch_id IS NULL").count() == 0

    # four tables at a time
    in_parallel(["provinces", "cities", "customers", "products", "product_categories", "orders", "order_details"],
                check)


def test_dq_results_balance_and_report_warnings(spark, dirty):
    dq = dirty["catalog"].read(spark, "ops.dq_results").toPandas().set_index("table")
    assert (dq.rows_read == dq.rows_written + dq.rows_quarantined + dq.duplicates_removed).all()
    for table, row in dq.iterrows():
        assert dict(row["quarantined_by_reason"]) == dirty["quarantine"].get(table, {}), table
        assert row["duplicates_removed"] == dirty["duplicates"].get(table, 0), table
        assert dict(row["warnings"]) == dirty["warnings"].get(table, {}), table
    s = dirty["survivors"]
    assert dq.loc["orders", "rows_written"] == len(s["orders"])
    assert dq.loc["order_details", "rows_written"] == len(s["order_details"])


def test_orphans_point_at_unknown_members(spark, dirty):
    fct = dirty["catalog"].read(spark, "silver.fct_order_lines")
    assert fct.where("customer_id = 987654").select("customer_key").distinct().collect()[0][0] == -1
    assert fct.where("product_id = 987654").select("product_key").distinct().collect()[0][0] == -1
    assert fct.where("city_id = -1").count() == 1
    baru = dirty["catalog"].read(spark, "silver.dim_location").where("city_id = 9001").collect()[0]
    assert (baru["province_id"], baru["province_name"], baru["city_type"]) == (-1, "Unknown", "KOTA")
    green = dirty["catalog"].read(spark, "silver.dim_product").where("product_id = 500").collect()[0]
    assert green["category_name"] == "Unknown" and green["product_type"] == "Hoodie" and green["color"] == "Green"
    for dim, key in [("dim_customer", "customer_key"), ("dim_product", "product_key"), ("dim_location", "city_id"),
                     ("dim_date", "date_key")]:
        assert dirty["catalog"].read(spark, f"silver.{dim}").where(f"{key} = -1").count() == 1, dim


def test_gold_equals_the_model_over_the_survivors(spark, dirty):
    s = dirty["survivors"]
    facts = em.fact_lines(s)
    catalog = dirty["catalog"]
    fct = catalog.read(spark, "silver.fct_order_lines")
    assert fct.count() == len(facts)
    assert fct.agg(F.sum("line_revenue")).collect()[0][0] == int(facts["revenue"].sum())
    em.assert_same(catalog.read(spark, "gold.dm_sales_monthly"), em.sales_monthly(facts))
    em.assert_same(catalog.read(spark, "gold.dm_product_ranking"), em.product_ranking(facts, s))
    em.assert_same(catalog.read(spark, "gold.dm_region_monthly"), em.region_monthly(facts, s))
    em.assert_same(catalog.read(spark, "gold.dm_basket_pairs"), em.basket_pairs(facts, s))
    em.assert_same(catalog.read(spark, "gold.dm_product_monthly"), em.product_monthly(facts, s))
    em.assert_same(catalog.read(spark, "gold.dm_category_gender_monthly"), em.category_gender_monthly(facts, s))
    em.assert_same(catalog.read(spark, "gold.dm_customer_rfm"), em.customer_rfm(facts, s))
    em.assert_same(catalog.read(spark, "gold.dm_customer_cohorts"), em.customer_cohorts(facts))


def test_regions_follow_the_orders_own_province(spark, dirty):
    catalog, s = dirty["catalog"], dirty["survivors"]
    mart = catalog.read(spark, "gold.dm_region_monthly").toPandas()
    fct = catalog.read(spark, "silver.fct_order_lines").toPandas()
    # revenue by province: the mart holds exactly the fact's
    assert mart.groupby("province_id")["revenue"].sum().to_dict() == \
        fct.groupby("province_id")["line_revenue"].sum().to_dict()
    # and both the source's orders' own provinces (pandas over the surviving rows)
    facts = em.fact_lines(s)
    assert mart.groupby("province_id")["revenue"].sum().to_dict() == \
        facts.groupby("province_id")["revenue"].sum().to_dict()
    orders = s["orders"].set_index("order_id")
    mismatched = orders.loc[orders.index.max()]  # the last dirty order: its city lies in another province
    city_prov = int(s["cities"].set_index("city_id").loc[mismatched.city_id, "province_id"])
    assert city_prov != mismatched.province_id
    row = mart[(mart.city_id == mismatched.city_id) & (mart.province_id == mismatched.province_id)]
    assert len(row) == 1 and row.iloc[0].province_name == s["provinces"].set_index("province_id").loc[
        mismatched.province_id, "province_names"]
    # the order with an unknown city is the "Unknown" city of its own province, not of province -1
    assert not (mart.province_id == -1).any()
    assert set(mart[mart.city_id == -1].province_id) == {int(s["cities"].iloc[0].province_id)}


def test_a_truncated_cities_workbook_fails_bronze_and_writes_nothing(spark, dirty, tmp_path):
    settings, catalog = dirty["settings"], dirty["catalog"]
    workbook = Path(settings.landing) / "cities.xlsx"
    cities = pd.read_excel(workbook, sheet_name="Worksheet")
    before = {n: catalog.version(spark, n) for n in ("bronze.cities", "bronze.orders", "bronze.customers")}
    kept = tmp_path / "cities.xlsx"
    workbook.rename(kept)
    try:
        cities.head(len(cities) // 2).to_excel(workbook, sheet_name="Worksheet", index=False)
        with pytest.raises(SnapshotShrinkError, match=rf"bronze.cities: the new snapshot lacks "
                                                      rf"{len(cities) - len(cities) // 2} of the {len(cities)} keys"):
            BronzeIngest(spark, settings, log=lambda m: None).run()
        assert {n: catalog.version(spark, n) for n in before} == before
    finally:
        kept.replace(workbook)
