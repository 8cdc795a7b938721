"""Bronze on real Spark + Delta, from a real store database (SQLite and the project's PostgreSQL).

Expected values come from the source files, read here with pandas, never from the pipeline."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from apparel.catalog import Catalog
from apparel.errors import SourceError
from apparel.jobs.bronze import BronzeIngest
from apparel.schemas import SOURCES
from apparel.seed import seed_dataset
from apparel.store import StoreDB

# the table for the shared dataset
EXPECTED_SHARED = {"provinces": 11, "cities": 222, "customers": 200, "products": 43, "product_categories": 2,
                   "orders": 7000, "order_details": 18322}


def pandas_counts(folder) -> dict[str, int]:
    """Row counts of the 7 files, read independently of the pipeline's loaders."""
    return {
        "provinces": len(pd.read_excel(folder / "provinces.xlsx", sheet_name="Sheet1")),
        "cities": len(pd.read_excel(folder / "cities.xlsx", sheet_name="Worksheet")),
        "customers": len(pd.read_parquet(folder / "customers.parquet")),
        "products": len(pd.read_json(folder / "products.json")),
        "product_categories": len(pd.read_json(folder / "product_categories.json")),
        "orders": len(pd.read_csv(folder / "orders.csv")),
        "order_details": len(pd.read_csv(folder / "order_details.csv")),
    }


def bronze_counts(spark, settings) -> dict[str, int]:
    catalog = Catalog(settings)
    return {t: catalog.read(spark, f"bronze.{t}").count() for t in SOURCES}


def quiet(_msg):
    pass


def settings_path(settings, name) -> Path:
    return Path(settings.landing) / name


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_bronze_lands_counts_reruns_and_increments(spark, make_settings, shared_dataset, store):
    settings = make_settings(store)
    seed_dataset(settings, shared_dataset, log=quiet)
    expected = pandas_counts(shared_dataset)
    assert expected == EXPECTED_SHARED

    first = BronzeIngest(spark, settings, log=quiet).run()
    assert bronze_counts(spark, settings) == expected
    assert {r.table: r.rows_written for r in first} == expected

    # lineage columns: one batch id for the whole run, the source named per table
    orders = Catalog(settings).read(spark, "bronze.orders")
    meta = orders.select("_source", "_batch_id").distinct().collect()
    assert [(r["_source"], r["_batch_id"]) for r in meta] == [("store_db.orders", first[0].batch_id)]
    cities_src = Catalog(settings).read(spark, "bronze.cities").select("_source").distinct().collect()
    assert [r[0] for r in cities_src] == ["excel:cities.xlsx#Worksheet"]

    # bronze keeps the source values as they are: revenue and the reused line id survive
    src_lines = pd.read_csv(shared_dataset / "order_details.csv")
    lines = Catalog(settings).read(spark, "bronze.order_details")
    assert lines.agg({"unit_sales": "sum"}).collect()[0][0] == int(src_lines.unit_sales.sum())
    assert lines.select("order_detail_id").distinct().count() == src_lines.order_detail_id.nunique()

    # a re-run with no new source rows appends nothing
    second = BronzeIngest(spark, settings, log=quiet).run()
    assert bronze_counts(spark, settings) == expected
    assert {r.table: r.rows_written for r in second if r.mode == "incremental"} == {"orders": 0, "order_details": 0}

    # 10 new orders with their lines arrive in the store database
    db = StoreDB(settings.store_db)
    max_order = int(pd.read_csv(shared_dataset / "orders.csv").order_id.max())
    max_line = int(src_lines.order_detail_id.max())
    new_orders = [(max_order + i, datetime(2023, 1, 2, 10, i), 1 + i, 1, 1) for i in range(1, 11)]
    new_lines = []
    for i, (oid, *_rest) in enumerate(new_orders):
        for j in range(1 + i % 3):  # 1, 2 or 3 lines per order
            new_lines.append((max_line + len(new_lines) + 1, oid, 1 + j, 2, 190000, 380000))
    db.insert_rows(SOURCES["orders"], new_orders)
    db.insert_rows(SOURCES["order_details"], new_lines)

    third = BronzeIngest(spark, settings, log=quiet).run()
    after = bronze_counts(spark, settings)
    assert after == {**expected, "orders": expected["orders"] + 10,
                     "order_details": expected["order_details"] + len(new_lines)}
    landed = Catalog(settings).read(spark, "bronze.orders").where(f"_batch_id = '{third[0].batch_id}'")
    got = sorted(tuple(r) for r in landed.select("order_id", "order_date", "customer_id", "province_id",
                                                 "city_id").collect())
    assert got == sorted(new_orders)

    runs = Catalog(settings).read(spark, "ops.ingest_runs").where(f"batch_id = '{third[0].batch_id}'")
    acc = {r["table"]: (r["source_rows"], r["rows_written"]) for r in runs.collect()}
    assert acc["orders"] == (10, 10) and acc["order_details"] == (len(new_lines), len(new_lines))


def test_null_key_rows_land_once(spark, make_settings, tmp_path):
    """Rows whose key is null have no watermark position: each is landed exactly once, never dropped."""
    settings = make_settings("sqlite")
    db = StoreDB(settings.store_db)
    db.create_schema(SOURCES.values())
    db.insert_rows(SOURCES["orders"], [(1, datetime(2022, 1, 1), 5, 1, 1), (None, datetime(2022, 1, 2), 6, 1, 1),
                                       (2, None, 7, 1, 1)])
    db.insert_rows(SOURCES["order_details"], [(10, 1, 3, 1, 100, 100), (None, 1, 4, 1, 100, 100),
                                              (11, None, 4, 1, 100, 100)])
    shutil.rmtree(settings.landing, ignore_errors=True)
    ingest = BronzeIngest(spark, settings, log=quiet)
    ingest.run(["store"])
    catalog = Catalog(settings)
    assert catalog.read(spark, "bronze.orders").count() == 3
    assert catalog.read(spark, "bronze.order_details").count() == 3

    BronzeIngest(spark, settings, log=quiet).run(["store"])
    assert catalog.read(spark, "bronze.orders").count() == 3
    assert catalog.read(spark, "bronze.order_details").count() == 3

    db.insert_rows(SOURCES["orders"], [(None, datetime(2022, 3, 3), 8, 1, 1)])
    BronzeIngest(spark, settings, log=quiet).run(["store"])
    assert catalog.read(spark, "bronze.orders").where("order_id IS NULL").count() == 2

    # a second row identical to one already landed is a new row too: copies are counted, not merged
    db.insert_rows(SOURCES["orders"], [(None, datetime(2022, 1, 2), 6, 1, 1)])
    BronzeIngest(spark, settings, log=quiet).run(["store"])
    assert catalog.read(spark, "bronze.orders").where("order_id IS NULL").count() == 3


def _write_workbook(path, sheet, header, rows, trailing_blank=0):
    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(header)
    for r in rows:
        ws.append(r)
    for _ in range(trailing_blank):
        ws.append([None] * len(header))
        ws.append([" "] * len(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def test_workbook_headers_are_tolerant(spark, make_settings, shared_dataset):
    settings = make_settings("sqlite")
    seed_dataset(settings, shared_dataset, log=quiet)
    provinces = pd.read_excel(shared_dataset / "provinces.xlsx", sheet_name="Sheet1")
    _write_workbook(settings_path(settings, "provinces.xlsx"), "Sheet1", ["  Province_ID ", "PROVINCE_NAMES"],
                    provinces.values.tolist(), trailing_blank=3)
    BronzeIngest(spark, settings, log=quiet).run(["excel"])
    got = Catalog(settings).read(spark, "bronze.provinces").select("province_id", "province_names").toPandas()
    pd.testing.assert_frame_equal(got.sort_values("province_id").reset_index(drop=True),
                                  provinces.sort_values("province_id").reset_index(drop=True), check_dtype=False)


def test_workbook_missing_column_fails_and_writes_nothing(spark, make_settings, shared_dataset):
    settings = make_settings("sqlite")
    seed_dataset(settings, shared_dataset, log=quiet)
    cities = pd.read_excel(shared_dataset / "cities.xlsx", sheet_name="Worksheet")
    _write_workbook(settings_path(settings, "cities.xlsx"), "Worksheet", ["city_id", "province_id"],
                    cities[["city_id", "province_id"]].values.tolist())
    with pytest.raises(SourceError) as err:
        BronzeIngest(spark, settings, log=quiet).run()
    message = str(err.value)
    assert "city_names" in message and "cities.xlsx" in message and "Worksheet" in message
    catalog = Catalog(settings)
    assert not catalog.exists(spark, "bronze.cities")
    assert not any(catalog.exists(spark, f"bronze.{t}") for t in SOURCES)


def test_workbook_bad_id_names_row(make_settings, tmp_path):
    from apparel.sources import read_workbook

    path = tmp_path / "provinces.xlsx"
    _write_workbook(path, "Sheet1", ["province_id", "province_names"], [[1, "BALI"], ["two", "JAWA"]])
    with pytest.raises(SourceError, match=r"provinces.xlsx#Sheet1: column 'province_id', row 3: 'two'"):
        read_workbook(path, "Sheet1", SOURCES["provinces"])
