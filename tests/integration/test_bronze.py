"""Bronze on real Spark + Delta, from a real store database (SQLite and the project's PostgreSQL).

Expected values come from the source files, read here with pandas, never from the pipeline."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import Workbook

from apparel.catalog import Catalog
from apparel.errors import ConfigError, SnapshotShrinkError, SourceError
from apparel.jobs.bronze import BronzeIngest
from apparel.pipeline import run_layers, summary_lines
from apparel.report import _ingest_table, latest_ingest
from apparel.schemas import SOURCES
from apparel.seed import seed_dataset
from apparel.store import StoreDB
from conftest import in_parallel

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
    return in_parallel(SOURCES, lambda t: catalog.read(spark, f"bronze.{t}").count())


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


# --- late rows, reconciliation, unchanged snapshots ----------------------------------------------------------

PROVINCES = [(1, "BALI"), (2, "JAWA BARAT")]
CITIES = [(10, "DENPASAR", 1), (20, "BANDUNG", 2)]


def _landing_workbooks(settings, cities=CITIES):
    _write_workbook(settings_path(settings, "provinces.xlsx"), "Sheet1", ["province_id", "province_names"],
                    [list(r) for r in PROVINCES])
    _write_workbook(settings_path(settings, "cities.xlsx"), "Worksheet", ["city_id", "city_names", "province_id"],
                    [list(r) for r in cities])


def _order(order_id):
    return (order_id, datetime(2022, 1, 1) + timedelta(days=order_id), 100 + order_id, 1, 10)


def _line(order_id, line_id, qty=1):
    return (line_id, order_id, 1 + line_id % 3, qty, 1000, 1000 * qty)


def _ops(spark, settings, batch_id) -> dict:
    runs = Catalog(settings).read(spark, "ops.ingest_runs").where(f"batch_id = '{batch_id}'")
    return {r["table"]: r.asDict() for r in runs.collect()}


def _source_columns(table):
    return SOURCES[table].column_names


def _bronze_rows(spark, settings, table, where="true") -> Counter:
    df = Catalog(settings).read(spark, f"bronze.{table}").where(where)
    return Counter(tuple(r) for r in df.select(*_source_columns(table)).collect())


def test_late_rows_within_the_lookback_land_once_and_older_ones_are_reported(spark, make_settings):
    """With a lookback of 5 order ids, a late line for a recent order, an order committed out of sequence and a
    second copy of a recent line land exactly once; a late line for an old order is reported in
    ops.ingest_runs and the run summary, and lands once the lookback covers it."""
    settings = make_settings("sqlite", bronze__lookback_orders=5)
    db = StoreDB(settings.store_db)
    db.create_schema(SOURCES.values())
    _landing_workbooks(settings)
    # orders 1..20 without 17, two lines each, line ids rising with the order id (10 * order + 1, + 2)
    orders = [_order(i) for i in range(1, 21) if i != 17]
    lines = [_line(o, 10 * o + j) for o in range(1, 21) if o != 17 for j in (1, 2)]
    db.insert_rows(SOURCES["orders"], orders)
    db.insert_rows(SOURCES["order_details"], lines)
    BronzeIngest(spark, settings, log=quiet).run(["store"])
    assert _bronze_rows(spark, settings, "order_details") == Counter(lines)   # marks: 20 and (20, 202)

    # late arrivals: order 17 and its two lines (out of sequence), a third line of order 18 with a line id
    # below the mark's, a second copy of a line of order 19, and a new order 21 above the mark
    late_orders = [_order(17)]
    late_lines = [_line(17, 171), _line(17, 172), _line(18, 183, qty=2), _line(19, 191)]
    new_orders, new_lines = [_order(21)], [_line(21, 211)]
    db.insert_rows(SOURCES["orders"], late_orders + new_orders)
    db.insert_rows(SOURCES["order_details"], late_lines + new_lines)
    orders, lines = orders + late_orders + new_orders, lines + late_lines + new_lines

    second = BronzeIngest(spark, settings, log=quiet).run(["store"])
    for _ in range(2):  # and a re-run lands nothing more
        assert _bronze_rows(spark, settings, "orders") == Counter(orders)
        assert _bronze_rows(spark, settings, "order_details") == Counter(lines)
        assert _bronze_rows(spark, settings, "order_details", f"_batch_id = '{second[0].batch_id}'") == \
            Counter(late_lines + new_lines)
        third = BronzeIngest(spark, settings, log=quiet).run(["store"])
    ops = _ops(spark, settings, second[0].batch_id)
    assert (ops["orders"]["rows_written"], ops["orders"]["late_rows"]) == (2, 1)
    assert (ops["order_details"]["rows_written"], ops["order_details"]["late_rows"]) == (5, 4)
    assert ops["order_details"]["watermark_after"] == "21,211" and ops["order_details"]["lookback_orders"] == 5
    assert {t: (r["source_rows_below_mark"], r["bronze_rows_below_mark"], r["unreconciled_rows"])
            for t, r in ops.items() if r["mode"] == "incremental"} == {
        "orders": (len(orders), len(orders), 0), "order_details": (len(lines), len(lines), 0)}
    assert {r.table: r.rows_written for r in third if r.mode == "incremental"} == {"orders": 0, "order_details": 0}
    assert not [r.warning for r in second + third if r.warning]

    # a late line for order 3: the window now covers order ids 17..21, so it is not landed, but reported
    old_line = _line(3, 33)
    db.insert_rows(SOURCES["order_details"], [old_line])
    lines.append(old_line)
    summary = run_layers(spark, settings, ["bronze"], log=quiet)
    assert _bronze_rows(spark, settings, "order_details") == Counter(lines) - Counter([old_line])
    runs = Catalog(settings).read(spark, "ops.ingest_runs")
    fourth = runs.where("table = 'order_details'").orderBy(runs["ingested_at"].desc(), runs["batch_id"].desc())
    row = fourth.first()
    assert (row["rows_written"], row["source_rows_below_mark"], row["bronze_rows_below_mark"],
            row["unreconciled_rows"]) == (0, len(lines), len(lines) - 1, 1)
    assert len(lines) == 19 * 2 + 4 + 1 + 1
    warning = ("bronze.order_details: the source holds 44 row(s) at or below the mark 21,211, bronze 43: 1 row(s) "
               "below the lookback window are not landed; land them with one bronze run with "
               "APPAREL_BRONZE_LOOKBACK_ORDERS=21")
    assert f"warning: {warning}" in summary_lines(summary, ["bronze"])
    assert [ln for ln in summary_lines(summary, ["bronze"]) if ln.startswith("warning:")] == [f"warning: {warning}"]
    assert warning in _ingest_table(latest_ingest(spark, settings)).replace("&#x27;", "'")

    # the remedy the warning names: one run whose lookback covers order 3 lands it, once
    fixed = BronzeIngest(spark, make_settings("sqlite", bronze__lookback_orders=21), log=quiet).run(["store"])
    assert _bronze_rows(spark, settings, "order_details") == Counter(lines)
    assert {r.table: (r.rows_written, r.late_rows, r.unreconciled_rows) for r in fixed} == {
        "customers": (0, None, None), "products": (0, None, None), "product_categories": (0, None, None),
        "orders": (0, 0, 0), "order_details": (1, 1, 0)}


def _versions(spark, settings, tables) -> dict[str, int]:
    return {t: Catalog(settings).last_commit(spark, f"bronze.{t}")["version"] for t in tables}


SNAPSHOTS = ["customers", "products", "product_categories", "provinces", "cities"]


def test_unchanged_snapshot_writes_no_delta_version_and_a_changed_one_does(spark, make_settings):
    settings = make_settings("sqlite")
    db = StoreDB(settings.store_db)
    customers = [(1, None, "Tan", "M"), (2, "Ayu", "Lestari", "F"), (3, "Budi", "Santoso", "M")]
    products = [(1, "Kaos", "M", 50000, 1), (2, "Kemeja", "L", 120000, 2)]
    categories = [(1, "Pria"), (2, "Wanita")]
    db.replace_rows(SOURCES["customers"], customers)
    db.replace_rows(SOURCES["products"], products)
    db.replace_rows(SOURCES["product_categories"], categories)
    db.create_schema(SOURCES.values())
    _landing_workbooks(settings)

    BronzeIngest(spark, settings, log=quiet).run()
    assert _versions(spark, settings, SNAPSHOTS) == dict.fromkeys(SNAPSHOTS, 0)

    # the same content, the store's rows in another physical order: nothing is written
    db.replace_rows(SOURCES["customers"], list(reversed(customers)))
    second = BronzeIngest(spark, settings, log=quiet).run()
    assert _versions(spark, settings, SNAPSHOTS) == dict.fromkeys(SNAPSHOTS, 0)
    got = {r.table: (r.mode, r.source_rows, r.rows_written, r.delta_version) for r in second if r.table in SNAPSHOTS}
    assert got == {"customers": ("snapshot-unchanged", 3, 0, 0), "products": ("snapshot-unchanged", 2, 0, 0),
                   "product_categories": ("snapshot-unchanged", 2, 0, 0),
                   "provinces": ("snapshot-unchanged", 2, 0, 0), "cities": ("snapshot-unchanged", 2, 0, 0)}
    ops = _ops(spark, settings, second[0].batch_id)
    assert {t: (ops[t]["mode"], ops[t]["rows_written"]) for t in SNAPSHOTS} == \
        dict.fromkeys(SNAPSHOTS, ("snapshot-unchanged", 0))
    assert ops["customers"]["content_fingerprint"].startswith("rows=3 ")

    # changes: a customer's name moves from last to first name, a second copy of a product row, a city renamed
    customers = [(1, "Tan", None, "M")] + customers[1:]
    products = products + [products[0]]
    cities = [(10, "KOTA DENPASAR", 1), CITIES[1]]
    db.replace_rows(SOURCES["customers"], customers)
    db.replace_rows(SOURCES["products"], products)
    _landing_workbooks(settings, cities=cities)
    third = BronzeIngest(spark, settings, log=quiet).run()
    assert _versions(spark, settings, SNAPSHOTS) == {"customers": 1, "products": 1, "cities": 1,
                                                     "product_categories": 0, "provinces": 0}
    assert {r.table: (r.mode, r.rows_written) for r in third if r.table in SNAPSHOTS} == {
        "customers": ("snapshot", 3), "products": ("snapshot", 3), "cities": ("snapshot", 2),
        "product_categories": ("snapshot-unchanged", 0), "provinces": ("snapshot-unchanged", 0)}
    assert _bronze_rows(spark, settings, "customers") == Counter(customers)
    assert _bronze_rows(spark, settings, "products") == Counter(products)
    assert _bronze_rows(spark, settings, "cities") == Counter(cities)
    # the earlier snapshot stays readable by time travel
    v0 = spark.read.format("delta").option("versionAsOf", 0).load(Catalog(settings).path("bronze.cities"))
    assert Counter(tuple(r) for r in v0.select(*_source_columns("cities")).collect()) == Counter(CITIES)


def test_a_shrunken_master_snapshot_fails_the_run_before_anything_is_written(spark, make_settings):
    """bronze.snapshot_max_loss_percent (20 %): a snapshot lacking more than that share of the held snapshot's
    keys fails the run naming each such table with its counts, and no table gets a new version; exactly 20 % is
    allowed; --accept-shrink lands the named table."""
    settings = make_settings("sqlite")
    db = StoreDB(settings.store_db)
    customers = [(i, f"First{i}", f"Last{i}", "MF"[i % 2]) for i in range(1, 11)]
    products = [(i, f"Kaos {i}", "M", 50000 + i, 1) for i in range(1, 6)]
    cities = [(10 * i, f"KOTA {i}", 1 + i % 2) for i in range(1, 6)]
    db.replace_rows(SOURCES["customers"], customers)
    db.replace_rows(SOURCES["products"], products)
    db.replace_rows(SOURCES["product_categories"], [(1, "Pria"), (2, "Wanita")])
    db.create_schema(SOURCES.values())
    db.insert_rows(SOURCES["orders"], [_order(1)])
    db.insert_rows(SOURCES["order_details"], [_line(1, 1)])
    _landing_workbooks(settings, cities=cities)
    BronzeIngest(spark, settings, log=quiet).run()
    tables = SNAPSHOTS + ["orders", "order_details"]
    before = _versions(spark, settings, tables)
    ingest_runs = Catalog(settings).count(spark, "ops.ingest_runs")

    # a half-loaded customers table (3 of 10 gone), a truncated cities workbook (4 of 5 gone), an empty provinces
    # workbook, one product of 5 deleted (20 %: allowed), and a new order waiting
    db.replace_rows(SOURCES["customers"], customers[3:])
    db.replace_rows(SOURCES["products"], products[1:])
    db.insert_rows(SOURCES["orders"], [_order(2)])
    db.insert_rows(SOURCES["order_details"], [_line(2, 2)])
    _write_workbook(settings_path(settings, "provinces.xlsx"), "Sheet1", ["province_id", "province_names"], [])
    _write_workbook(settings_path(settings, "cities.xlsx"), "Worksheet", ["city_id", "city_names", "province_id"],
                    [list(cities[0])])
    with pytest.raises(SnapshotShrinkError) as err:
        BronzeIngest(spark, settings, log=quiet).run()
    message = str(err.value)
    assert "bronze.customers: the new snapshot lacks 3 of the 10 keys (30.0 %) of the snapshot bronze holds " \
           "(version 0)" in message
    assert "bronze.cities: the new snapshot lacks 4 of the 5 keys (80.0 %)" in message
    assert "bronze.provinces: the new snapshot lacks 2 of the 2 keys (100.0 %)" in message
    assert "products" not in message
    assert ": more than bronze.snapshot_max_loss_percent (20 %), so nothing was written (a truncated workbook or a " \
           "half-loaded table?). If those rows were really deleted, run again with --accept-shrink " in message
    assert set(message.rsplit("run again with ", 1)[1].replace("--accept-shrink ", "").split()) == \
        {"customers", "provinces", "cities"}
    assert _versions(spark, settings, tables) == before
    assert Catalog(settings).count(spark, "ops.ingest_runs") == ingest_runs

    # one table accepted is not enough
    with pytest.raises(SnapshotShrinkError) as err:
        BronzeIngest(spark, settings, log=quiet, accept_shrink=["customers"]).run()
    assert "bronze.customers" not in str(err.value) and "bronze.cities" in str(err.value)
    assert _versions(spark, settings, tables) == before
    with pytest.raises(ConfigError, match="--accept-shrink orders: not a master snapshot table"):
        BronzeIngest(spark, settings, log=quiet, accept_shrink=["orders"])

    said: list[str] = []
    BronzeIngest(spark, settings, log=said.append, accept_shrink=["customers", "cities", "provinces"]).run()
    assert _bronze_rows(spark, settings, "customers") == Counter(customers[3:])
    assert _bronze_rows(spark, settings, "products") == Counter(products[1:])
    assert _bronze_rows(spark, settings, "cities") == Counter([cities[0]])
    assert _bronze_rows(spark, settings, "provinces") == Counter()
    assert _bronze_rows(spark, settings, "orders") == Counter([_order(1), _order(2)])
    assert "  warning: bronze.customers: the new snapshot lacks 3 of the 10 keys (30.0 %) of the snapshot bronze " \
           "holds (version 0): accepted (--accept-shrink customers)" in said, said
    assert "  note: bronze.products: the new snapshot lacks 1 of the 5 keys (20.0 %) of the snapshot bronze holds " \
           "(version 0), within bronze.snapshot_max_loss_percent (20 %)" in said, said
