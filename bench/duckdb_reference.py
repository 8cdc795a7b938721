"""An independent DuckDB reference of the pipeline: the same 7 source files, the same data contract, the silver
dimensions and facts and the 8 gold marts in SQL, every layer written as Delta tables with delta-rs.

It is written from ``docs/data_contract.md`` and ``docs/data_model.md`` (and the README's *Sources*), not from
the Spark code, and it shares no code with the ``apparel`` package: where the two disagree, one of them reads
the spec differently (``tests/integration/test_duckdb_reference.py`` compares their gold marts).

What it does, for a dataset folder as ``apparel seed --dataset`` takes it:

- **read sources**: ``orders.csv`` and ``order_details.csv`` (text, typed in SQL), ``customers.parquet``,
  ``products.json`` and ``product_categories.json`` (pandas "columns" orient), ``provinces.xlsx`` (sheet
  ``Sheet1``) and ``cities.xlsx`` (sheet ``Worksheet``, read with pandas/openpyxl as the seed reads them).
  Headers are matched ignoring case and surrounding whitespace, trailing blank workbook rows are ignored, a
  value that is not an integer where one is required is an error, and an ``order_date`` that is not an ISO
  timestamp loads as NULL (the seed stores timestamps to the millisecond; so does this);
- **bronze**: the typed rows plus ``_ingested_at``, ``_source`` and ``_batch_id`` (one batch);
- **contract**: exact duplicates, ``null_key``, ``invalid_date``, ``invalid_amount``, ``amount_mismatch``,
  ``key_collision``, ``missing_order``, in that order (first reason wins); orphans point at the unknown members;
  ``quarantine.<table>`` and ``ops.dq_results`` (with the row accounting checked);
- **silver**: ``dim_date``, ``dim_customer``, ``dim_product``, ``dim_location``, ``dim_province``, ``fct_order_lines``
  (partitioned by ``order_month``), ``fct_orders``. SCD2 as on a single full run from an empty lakehouse:
  one version per key, valid from 1900-01-01 to 9999-12-31, surrogate keys 1.. in natural-key order;
- **gold**: the 8 ``dm_*`` marts.

Every table is written with ``deltalake.write_deltalake`` (one commit each) under ``OUT/<layer>/<table>``.

As a module (``bench/`` is not a package: load the file, e.g. with ``importlib``)::

    result = build(dataset_dir, out_dir)      # out_dir=None: nothing is written
    result.gold["dm_sales_monthly"]           # pandas DataFrames, one per mart
    result.timings                            # {phase: seconds}, in phase order

As a script, printing the wall time per phase (``--json``: one JSON line instead)::

    .venv/bin/python bench/duckdb_reference.py --dataset DIR [--out DIR] [--json]

Without ``--out`` the Delta tables go to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
from deltalake import write_deltalake

UNKNOWN = "Unknown"

# The seven sources (README, "Sources"; data/README.md): file, workbook sheet, typed columns, key.
SOURCES: dict[str, dict] = {
    "provinces": {"file": "provinces.xlsx", "sheet": "Sheet1",
                  "columns": {"province_id": "BIGINT", "province_names": "VARCHAR"}, "key": ["province_id"]},
    "cities": {"file": "cities.xlsx", "sheet": "Worksheet",
               "columns": {"city_id": "BIGINT", "city_names": "VARCHAR", "province_id": "BIGINT"},
               "key": ["city_id"]},
    "customers": {"file": "customers.parquet",
                  "columns": {"customer_id": "BIGINT", "first_name": "VARCHAR", "last_name": "VARCHAR",
                              "gender": "VARCHAR"}, "key": ["customer_id"]},
    "products": {"file": "products.json",
                 "columns": {"product_id": "BIGINT", "product_name": "VARCHAR", "size": "VARCHAR",
                             "price": "BIGINT", "product_category_id": "BIGINT"}, "key": ["product_id"]},
    "product_categories": {"file": "product_categories.json",
                           "columns": {"product_category_id": "BIGINT", "product_category_name": "VARCHAR"},
                           "key": ["product_category_id"]},
    "orders": {"file": "orders.csv",
               "columns": {"order_id": "BIGINT", "order_date": "TIMESTAMP", "customer_id": "BIGINT",
                           "province_id": "BIGINT", "city_id": "BIGINT"}, "key": ["order_id"]},
    "order_details": {"file": "order_details.csv",
                      "columns": {"order_detail_id": "BIGINT", "order_id": "BIGINT", "product_id": "BIGINT",
                                  "qty": "BIGINT", "item_price": "BIGINT", "unit_sales": "BIGINT"},
                      "key": ["order_id", "order_detail_id"]},
}

# pandas.read_csv's default missing-value markers (the seed reads the CSV files with them)
CSV_NULLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
             "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]

MARTS = ["dm_sales_monthly", "dm_product_monthly", "dm_product_ranking", "dm_region_monthly",
         "dm_category_gender_monthly", "dm_customer_rfm", "dm_customer_cohorts", "dm_basket_pairs"]
SILVER = ["dim_date", "dim_customer", "dim_product", "dim_location", "dim_province", "fct_order_lines", "fct_orders"]


@dataclass
class Result:
    gold: dict[str, pd.DataFrame]                       # mart name -> its rows
    timings: dict[str, float]                           # phase -> seconds, in order; "total" last
    dq: pd.DataFrame                                    # ops.dq_results (the contract's accounting)
    rows: dict[str, int] = field(default_factory=dict)  # "<layer>.<table>" -> rows written
    out: Path | None = None


class ReferenceError(Exception):
    """A source the reference cannot read (same cases as the seed's errors)."""


# --- reading the sources as text, then typing them in SQL -------------------------------------------------

def _norm(name: object) -> str:
    return str(name).strip().lower()


def _pick(columns: list[str], table: str, origin: str) -> dict[str, str]:
    """canonical column -> the header as written; a missing required column is an error."""
    by_norm: dict[str, str] = {}
    for col in columns:
        by_norm.setdefault(_norm(col), col)
    missing = [c for c in SOURCES[table]["columns"] if c not in by_norm]
    if missing:
        raise ReferenceError(f"{origin}: required column {missing[0]!r} is missing; found {columns}")
    return {c: by_norm[c] for c in SOURCES[table]["columns"]}


def _text(value: object) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return str(value)


def _text_table(table: str, rows: dict[str, list]) -> pa.Table:
    return pa.table({c: pa.array([_text(v) for v in rows[c]], pa.string()) for c in SOURCES[table]["columns"]})


def _read_workbook(path: Path, sheet: str, table: str) -> pa.Table:
    raw = pd.read_excel(path, sheet_name=sheet, dtype=object, engine="openpyxl")
    picked = _pick(list(raw.columns), table, f"{path.name}#{sheet}")
    frame = raw[list(picked.values())]
    blank = frame.apply(lambda s: s.isna() | s.astype(str).str.strip().eq(""), axis=0).all(axis=1).to_numpy()
    keep = len(blank)
    while keep and blank[keep - 1]:  # trailing blank rows are not data
        keep -= 1
    frame = frame.iloc[:keep]
    return _text_table(table, {c: frame[h].tolist() for c, h in picked.items()})


def _row_order(label: str) -> tuple:
    """Numeric row labels in numeric order, any others after them."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def _read_columns_json(path: Path, table: str) -> pa.Table:
    data = json.loads(path.read_text(encoding="utf-8"))  # {"column": {"row": value}}
    picked = _pick(list(data), table, path.name)
    index = sorted({i for col in data.values() for i in col}, key=_row_order)
    return _text_table(table, {c: [data[h].get(i) for i in index] for c, h in picked.items()})


def _register_source(con: duckdb.DuckDBPyConnection, folder: Path, table: str) -> None:
    """Create ``raw_<table>``: the source's required columns under their canonical names, as text."""
    spec = SOURCES[table]
    path = folder / spec["file"]
    if not path.exists():
        raise ReferenceError(f"dataset file missing: {path}")
    if path.suffix == ".xlsx":
        con.register(f"arrow_{table}", _read_workbook(path, spec["sheet"], table))
        con.execute(f"CREATE TABLE raw_{table} AS SELECT * FROM arrow_{table}")
        con.unregister(f"arrow_{table}")
        return
    if path.suffix == ".json":
        con.register(f"arrow_{table}", _read_columns_json(path, table))
        con.execute(f"CREATE TABLE raw_{table} AS SELECT * FROM arrow_{table}")
        con.unregister(f"arrow_{table}")
        return
    quoted = "'" + str(path).replace("'", "''") + "'"
    if path.suffix == ".csv":
        nulls = ", ".join(f"'{n}'" for n in CSV_NULLS)
        rel = f"read_csv({quoted}, header = true, all_varchar = true, nullstr = [{nulls}])"
    else:  # parquet
        rel = f"read_parquet({quoted})"
    picked = _pick([d[0] for d in con.execute(f"SELECT * FROM {rel} LIMIT 0").description], table, path.name)
    select = ", ".join(f'CAST("{h}" AS VARCHAR) AS {c}' for c, h in picked.items())
    con.execute(f"CREATE TABLE raw_{table} AS SELECT {select} FROM {rel}")


def _typed_select(table: str) -> str:
    exprs = []
    for col, typ in SOURCES[table]["columns"].items():
        if typ == "BIGINT":
            exprs.append(f"TRY_CAST(trim({col}) AS BIGINT) AS {col}")
        elif typ == "TIMESTAMP":  # an unparseable date loads as NULL (the seed counts it); milliseconds kept
            exprs.append(f"date_trunc('millisecond', TRY_CAST(trim({col}) AS TIMESTAMP)) AS {col}")
        else:
            exprs.append(col)
    return ", ".join(exprs)


def _check_integers(con: duckdb.DuckDBPyConnection, table: str) -> None:
    cols = [c for c, t in SOURCES[table]["columns"].items() if t == "BIGINT"]
    checks = ", ".join(
        f"count(*) FILTER (WHERE nullif(trim({c}), '') IS NOT NULL AND (TRY_CAST(trim({c}) AS DOUBLE) IS NULL "
        f"OR TRY_CAST(trim({c}) AS DOUBLE) <> floor(TRY_CAST(trim({c}) AS DOUBLE))))" for c in cols)
    bad = con.execute(f"SELECT {checks} FROM raw_{table}").fetchone()
    for col, n in zip(cols, bad):
        if n:
            raise ReferenceError(f"{SOURCES[table]['file']}: column {col!r}: {n} value(s) are not integers")


# --- the contract -----------------------------------------------------------------------------------------

def _contract(con: duckdb.DuckDBPyConnection) -> None:
    """``dedup_<t>`` (one row per distinct source row), ``classified_<t>`` (``_reason`` or NULL), ``ok_<t>``
    (the rows that passed) and ``quarantine_<t>``, per docs/data_contract.md."""
    for table in ["provinces", "cities", "customers", "products", "product_categories", "orders"]:
        _classify(con, table)
    _classify(con, "order_details")  # rule 7 needs the orders that survived


def _classify(con: duckdb.DuckDBPyConnection, table: str) -> None:
    spec = SOURCES[table]
    cols = list(spec["columns"])
    col_list = ", ".join(cols)
    key = spec["key"]
    # rule 1: rows equal in every source column (GROUP BY holds NULLs equal) collapse to the earliest batch
    con.execute(f"CREATE TABLE dedup_{table} AS SELECT {col_list}, min(_batch_id) AS _batch_id, "
                f"count(*) AS _copies FROM bronze_{table} GROUP BY {col_list}")
    rules = [(" OR ".join(f"{k} IS NULL" for k in key), "null_key")]                       # rule 2
    if table == "orders":                                                                   # rule 3
        out_of_range = "order_date < TIMESTAMP '1970-01-01' OR order_date >= TIMESTAMP '2100-01-01'"
        rules.append((f"order_date IS NULL OR {out_of_range}", "invalid_date"))
    if table == "order_details":
        rules.append(("qty IS NULL OR item_price IS NULL OR qty <= 0 OR item_price < 0", "invalid_amount"))  # 4
        rules.append(("unit_sales IS NULL OR unit_sales <> CAST(qty AS HUGEINT) * item_price",
                      "amount_mismatch"))                                                   # rule 5
    early = "CASE " + " ".join(f"WHEN {cond} THEN '{reason}'" for cond, reason in rules) + " END"
    # rule 6: one key, several distinct rows among those that passed rules 2-5: every version goes
    collide = f"count(*) FILTER (WHERE _r IS NULL) OVER (PARTITION BY {', '.join(key)}) > 1"
    # rule 7: the line's order is not among the orders that survived
    missing = ("WHEN order_id NOT IN (SELECT order_id FROM ok_orders) THEN 'missing_order' "
               if table == "order_details" else "")
    con.execute(f"""
        CREATE TABLE classified_{table} AS
        SELECT {col_list}, _batch_id, _copies,
               CASE WHEN _r IS NOT NULL THEN _r WHEN {collide} THEN 'key_collision' {missing} END AS _reason
        FROM (SELECT *, {early} AS _r FROM dedup_{table})""")
    con.execute(f"CREATE TABLE ok_{table} AS SELECT {col_list}, _batch_id FROM classified_{table} "
                f"WHERE _reason IS NULL")
    con.execute(f"CREATE TABLE quarantine_{table} AS SELECT {col_list}, _reason, _batch_id "
                f"FROM classified_{table} WHERE _reason IS NOT NULL")


def _accounting(con: duckdb.DuckDBPyConnection, run_id: str, run_at: datetime, run_date: date) -> pa.Table:
    """``ops.dq_results``: rows read = written + quarantined + duplicates removed, per source table."""
    warnings = {
        "orders": con.execute("""SELECT
            count(*) FILTER (WHERE f.customer_key = -1) AS orphan_customer,
            count(*) FILTER (WHERE f.city_id = -1) AS orphan_city,
            count(*) FILTER (WHERE f.province_id = -1) AS orphan_province,
            count(*) FILTER (WHERE f.city_id <> -1 AND f.province_id <> -1 AND l.province_id <> -1
                             AND l.province_id <> f.province_id) AS city_province_mismatch
            FROM fct_orders f JOIN dim_location l ON l.city_id = f.city_id""").fetchone(),
        "order_details": con.execute("""SELECT
            count(*) FILTER (WHERE product_key = -1) AS orphan_product,
            count(*) FILTER (WHERE order_detail_id IN (SELECT order_detail_id FROM fct_order_lines
                GROUP BY order_detail_id HAVING count(DISTINCT order_id) > 1)) AS reused_line_id
            FROM fct_order_lines""").fetchone(),
        "cities": con.execute("SELECT count(*) FROM ok_cities WHERE province_id NOT IN "
                          "(SELECT province_id FROM ok_provinces) OR province_id IS NULL").fetchone(),
        "products": con.execute("SELECT count(*) FROM ok_products WHERE product_category_id NOT IN "
                            "(SELECT product_category_id FROM ok_product_categories) "
                            "OR product_category_id IS NULL").fetchone(),
    }
    names = {"orders": ["orphan_customer", "orphan_city", "orphan_province", "city_province_mismatch"],
             "order_details": ["orphan_product", "reused_line_id"], "cities": ["orphan_province"],
             "products": ["orphan_category"]}
    rows = []
    for table in SOURCES:
        read, written, quarantined, dups = con.execute(f"""SELECT
            (SELECT count(*) FROM bronze_{table}), (SELECT count(*) FROM ok_{table}),
            (SELECT count(*) FROM quarantine_{table}),
            (SELECT coalesce(sum(_copies - 1), 0) FROM dedup_{table})""").fetchone()
        if read != written + quarantined + dups:
            raise AssertionError(f"row accounting does not balance for {table}: "
                                 f"{read} != {written} + {quarantined} + {dups}")
        by_reason = dict(con.execute(f"SELECT _reason, count(*) FROM quarantine_{table} GROUP BY 1 ORDER BY 1")
                         .fetchall())
        warns = {n: int(v) for n, v in zip(names.get(table, []), warnings.get(table, ())) if v}
        rows.append({"run_id": run_id, "run_at": run_at, "run_date": run_date, "table": table,
                     "rows_read": int(read), "rows_written": int(written), "rows_quarantined": int(quarantined),
                     "duplicates_removed": int(dups), "quarantined_by_reason": list(by_reason.items()),
                     "warnings": list(warns.items())})
    counts = pa.map_(pa.string(), pa.int64())
    schema = pa.schema([("run_id", pa.string()), ("run_at", pa.timestamp("us", tz="UTC")),
                        ("run_date", pa.date32()), ("table", pa.string()), ("rows_read", pa.int64()),
                        ("rows_written", pa.int64()), ("rows_quarantined", pa.int64()),
                        ("duplicates_removed", pa.int64()), ("quarantined_by_reason", counts),
                        ("warnings", counts)])
    return pa.Table.from_pylist(rows, schema=schema)


# --- silver: dimensions and facts -------------------------------------------------------------------------

SILVER_SQL = {
    # one row per city, plus -1; the province of an unknown province_id is -1 / "Unknown"
    "dim_location": f"""
        SELECT c.city_id, c.city_names AS city_name,
               CASE WHEN upper(split_part(trim(c.city_names), ' ', 1)) IN ('KABUPATEN', 'KOTA')
                    THEN upper(split_part(trim(c.city_names), ' ', 1)) ELSE 'UNKNOWN' END AS city_type,
               CASE WHEN p.province_id IS NULL THEN -1 ELSE c.province_id END AS province_id,
               CASE WHEN p.province_id IS NULL THEN '{UNKNOWN}' ELSE p.province_names END AS province_name
        FROM ok_cities c LEFT JOIN ok_provinces p ON p.province_id = c.province_id
        UNION ALL SELECT -1, '{UNKNOWN}', 'UNKNOWN', -1, '{UNKNOWN}'""",
    # one row per province, plus -1
    "dim_province": f"""
        SELECT province_id, province_names AS province_name FROM ok_provinces
        UNION ALL SELECT -1, '{UNKNOWN}'""",
    # SCD2 on a first run: one version per key, 1900-01-01 .. 9999-12-31, keys 1.. in natural-key order
    "dim_customer": f"""
        SELECT row_number() OVER (ORDER BY customer_id) AS customer_key, customer_id, first_name, last_name,
               concat_ws(' ', first_name, last_name) AS full_name, gender,
               DATE '1900-01-01' AS valid_from, DATE '9999-12-31' AS valid_to, true AS is_current
        FROM ok_customers
        UNION ALL SELECT -1, -1, '{UNKNOWN}', '{UNKNOWN}', '{UNKNOWN}', '{UNKNOWN}',
                         DATE '1900-01-01', DATE '9999-12-31', true""",
    "dim_product": f"""
        SELECT row_number() OVER (ORDER BY p.product_id) AS product_key, p.product_id, p.product_name,
               split_part(p.product_name, ' ', 1) AS product_type,
               nullif(trim(substr(p.product_name, length(split_part(p.product_name, ' ', 1)) + 1)), '') AS color,
               p.size, p.price, p.product_category_id,
               CASE WHEN c.product_category_id IS NULL THEN '{UNKNOWN}' ELSE c.product_category_name END
                   AS category_name,
               DATE '1900-01-01' AS valid_from, DATE '9999-12-31' AS valid_to, true AS is_current
        FROM ok_products p LEFT JOIN ok_product_categories c ON c.product_category_id = p.product_category_id
        UNION ALL SELECT -1, -1, '{UNKNOWN}', '{UNKNOWN}', '{UNKNOWN}', '{UNKNOWN}', NULL, -1, '{UNKNOWN}',
                         DATE '1900-01-01', DATE '9999-12-31', true""",
    # surviving orders with their resolved keys (the base of both facts)
    "_orders": """
        SELECT o.order_id, o.order_date, CAST(strftime(o.order_date, '%Y%m%d') AS INTEGER) AS date_key,
               coalesce(d.customer_key, -1) AS customer_key, o.customer_id,
               CASE WHEN c.city_id IS NULL THEN -1 ELSE o.city_id END AS city_id,
               CASE WHEN p.province_id IS NULL THEN -1 ELSE o.province_id END AS province_id
        FROM ok_orders o
        LEFT JOIN dim_customer d ON d.customer_id = o.customer_id AND d.customer_key <> -1
             AND d.valid_from <= CAST(o.order_date AS DATE) AND CAST(o.order_date AS DATE) < d.valid_to
        LEFT JOIN ok_cities c ON c.city_id = o.city_id
        LEFT JOIN ok_provinces p ON p.province_id = o.province_id""",
    "fct_order_lines": """
        SELECT l.order_detail_id, l.order_id, o.order_date, o.date_key, o.customer_key, o.customer_id,
               coalesce(d.product_key, -1) AS product_key, l.product_id, o.city_id, o.province_id,
               l.qty, l.item_price, l.qty * l.item_price AS line_revenue,
               CAST(date_trunc('month', o.order_date) AS DATE) AS order_month
        FROM ok_order_details l JOIN _orders o ON o.order_id = l.order_id
        LEFT JOIN dim_product d ON d.product_id = l.product_id AND d.product_key <> -1
             AND d.valid_from <= CAST(o.order_date AS DATE) AND CAST(o.order_date AS DATE) < d.valid_to""",
    # one row per surviving order; an order without a surviving line has 0 lines
    "fct_orders": """
        SELECT o.order_id, o.order_date, o.date_key, o.customer_key, o.customer_id, o.city_id, o.province_id,
               count(l.order_id) AS lines, CAST(coalesce(sum(l.qty), 0) AS BIGINT) AS units,
               CAST(coalesce(sum(l.line_revenue), 0) AS BIGINT) AS order_revenue
        FROM _orders o LEFT JOIN fct_order_lines l ON l.order_id = o.order_id
        GROUP BY ALL""",
    # one row per day from the first to the last valid order date, plus -1
    "dim_date": f"""
        SELECT CAST(strftime(d, '%Y%m%d') AS INTEGER) AS date_key, CAST(d AS DATE) AS date,
               CAST(year(d) AS INTEGER) AS year, CAST(quarter(d) AS INTEGER) AS quarter,
               CAST(month(d) AS INTEGER) AS month, monthname(d) AS month_name,
               CAST(day(d) AS INTEGER) AS day_of_month, CAST(isodow(d) AS INTEGER) AS day_of_week,
               isodow(d) IN (6, 7) AS is_weekend
        FROM (SELECT unnest(generate_series(min(CAST(order_date AS DATE)), max(CAST(order_date AS DATE)),
                                            INTERVAL 1 DAY)) AS d FROM ok_orders)
        UNION ALL SELECT -1, NULL, NULL, NULL, NULL, '{UNKNOWN}', NULL, NULL, NULL""",
}

# --- gold: the 8 marts (docs/data_model.md, "Gold") -------------------------------------------------------

GOLD_SQL = {
    # revenue_mom_pct: null for the first month, after a month without sales, and after one without revenue
    "dm_sales_monthly": """
        WITH m AS (
            SELECT order_month AS month, count(DISTINCT order_id) AS orders,
                   count(DISTINCT customer_id) AS customers, CAST(sum(qty) AS BIGINT) AS units,
                   CAST(sum(line_revenue) AS BIGINT) AS revenue
            FROM fct_order_lines GROUP BY order_month)
        SELECT month, orders, customers, units, revenue,
               CAST((2 * CAST(revenue AS HUGEINT) + orders) // (2 * orders) AS BIGINT) AS avg_order_value,
               CASE WHEN lag(month) OVER w = month - INTERVAL 1 MONTH AND lag(revenue) OVER w <> 0
                    THEN CAST(revenue - lag(revenue) OVER w AS DOUBLE) * 100 / lag(revenue) OVER w
               END AS revenue_mom_pct
        FROM m WINDOW w AS (ORDER BY month)""",
    # labels of the current version of the product_id
    "dm_product_monthly": f"""
        SELECT f.product_id, coalesce(p.product_name, '{UNKNOWN}') AS product_name,
               coalesce(p.product_type, '{UNKNOWN}') AS product_type, coalesce(p.color, '{UNKNOWN}') AS color,
               coalesce(p.size, '{UNKNOWN}') AS size, coalesce(p.category_name, '{UNKNOWN}') AS category_name,
               f.order_month AS month, count(DISTINCT f.order_id) AS orders, CAST(sum(f.qty) AS BIGINT) AS units,
               CAST(sum(f.line_revenue) AS BIGINT) AS revenue
        FROM fct_order_lines f
        LEFT JOIN dim_product p ON p.product_id = f.product_id AND p.is_current AND p.product_key <> -1
        GROUP BY ALL""",
    # rank 1 = highest revenue, ties to the lower product_id
    "dm_product_ranking": f"""
        WITH r AS (SELECT product_id, CAST(sum(qty) AS BIGINT) AS units,
                          CAST(sum(line_revenue) AS BIGINT) AS revenue
                   FROM fct_order_lines GROUP BY product_id)
        SELECT r.product_id, coalesce(p.product_name, '{UNKNOWN}') AS product_name,
               coalesce(p.size, '{UNKNOWN}') AS size, coalesce(p.category_name, '{UNKNOWN}') AS category_name,
               r.units, r.revenue,
               CAST(r.revenue AS DOUBLE) * 100 / nullif(sum(r.revenue) OVER (), 0) AS revenue_share_pct,
               CAST(row_number() OVER (ORDER BY r.revenue DESC, r.product_id) AS INTEGER) AS revenue_rank
        FROM r LEFT JOIN dim_product p ON p.product_id = r.product_id AND p.is_current AND p.product_key <> -1""",
    # one row per province x city x month: the order's own province (the fact's), its city within it
    "dm_region_monthly": """
        SELECT f.order_month AS month, f.province_id, p.province_name, f.city_id, l.city_name, l.city_type,
               count(DISTINCT f.order_id) AS orders, count(DISTINCT f.customer_id) AS customers,
               CAST(sum(f.qty) AS BIGINT) AS units, CAST(sum(f.line_revenue) AS BIGINT) AS revenue
        FROM fct_order_lines f JOIN dim_location l ON l.city_id = f.city_id
        JOIN dim_province p ON p.province_id = f.province_id
        GROUP BY ALL""",
    # the current category of the product and the current gender of the customer ("Unknown" without one)
    "dm_category_gender_monthly": f"""
        SELECT coalesce(p.category_name, '{UNKNOWN}') AS category_name, coalesce(c.gender, '{UNKNOWN}') AS gender,
               f.order_month AS month, count(DISTINCT f.customer_id) AS customers,
               CAST(sum(f.qty) AS BIGINT) AS units, CAST(sum(f.line_revenue) AS BIGINT) AS revenue
        FROM fct_order_lines f
        LEFT JOIN dim_product p ON p.product_id = f.product_id AND p.is_current AND p.product_key <> -1
        LEFT JOIN dim_customer c ON c.customer_id = f.customer_id AND c.is_current AND c.customer_key <> -1
        GROUP BY ALL""",
    # quintiles, 5 the best: 1 + floor((rank - 1) * 5 / n), rank() over the n customers worst first (equal
    # values share a rank, so they share a score)
    "dm_customer_rfm": f"""
        WITH a AS (
            SELECT customer_id, CAST(min(order_date) AS DATE) AS first_order_date,
                   CAST(max(order_date) AS DATE) AS last_order_date, count(DISTINCT order_id) AS orders,
                   CAST(sum(qty) AS BIGINT) AS units, CAST(sum(line_revenue) AS BIGINT) AS revenue
            FROM fct_order_lines WHERE customer_id IS NOT NULL GROUP BY customer_id),
        s AS (
            SELECT a.*, CAST(date_diff('day', last_order_date,
                                       (SELECT CAST(max(order_date) AS DATE) FROM fct_order_lines)) AS INTEGER)
                            AS recency_days
            FROM a),
        q AS (
            SELECT s.*,
                   CAST(1 + ((rank() OVER (ORDER BY recency_days DESC) - 1) * 5) // count(*) OVER ()
                        AS INTEGER) AS r_score,
                   CAST(1 + ((rank() OVER (ORDER BY orders ASC) - 1) * 5) // count(*) OVER ()
                        AS INTEGER) AS f_score,
                   CAST(1 + ((rank() OVER (ORDER BY revenue ASC) - 1) * 5) // count(*) OVER ()
                        AS INTEGER) AS m_score
            FROM s)
        SELECT q.customer_id, coalesce(c.full_name, '{UNKNOWN}') AS full_name,
               coalesce(c.gender, '{UNKNOWN}') AS gender, first_order_date, last_order_date, orders, units,
               revenue, recency_days, r_score, f_score, m_score,
               CASE WHEN r_score >= 4 AND f_score >= 4 AND m_score >= 4 THEN 'Champions'
                    WHEN f_score >= 4 AND r_score >= 3 THEN 'Loyal'
                    WHEN r_score <= 2 AND f_score >= 3 THEN 'At Risk'
                    WHEN r_score >= 3 THEN 'Potential'
                    ELSE 'Hibernating' END AS rfm_segment
        FROM q LEFT JOIN dim_customer c ON c.customer_id = q.customer_id AND c.is_current AND c.customer_key <> -1""",
    "dm_customer_cohorts": """
        WITH active AS (SELECT DISTINCT customer_id, order_month FROM fct_order_lines
                        WHERE customer_id IS NOT NULL),
        first AS (SELECT customer_id, min(order_month) AS cohort_month FROM active GROUP BY customer_id),
        size AS (SELECT cohort_month, count(*) AS cohort_size FROM first GROUP BY cohort_month)
        SELECT f.cohort_month, CAST(date_diff('month', f.cohort_month, a.order_month) AS INTEGER)
                   AS months_since_first,
               s.cohort_size, count(*) AS active_customers,
               CAST(count(*) AS DOUBLE) * 100 / s.cohort_size AS retention_pct
        FROM active a JOIN first f USING (customer_id) JOIN size s USING (cohort_month)
        GROUP BY f.cohort_month, months_since_first, s.cohort_size""",
    # a style is the product name of the version on the line; unknown products have none
    "dm_basket_pairs": """
        WITH styled AS (
            SELECT DISTINCT f.order_id, p.product_name AS style
            FROM fct_order_lines f
            JOIN dim_product p ON p.product_id = f.product_id AND p.is_current AND p.product_key <> -1
            WHERE p.product_name IS NOT NULL),
        n AS (SELECT count(DISTINCT order_id) AS all_orders FROM fct_order_lines),
        per_style AS (SELECT style, count(*) AS orders FROM styled GROUP BY style),
        pairs AS (
            SELECT a.style AS style_a, b.style AS style_b, count(*) AS orders_together
            FROM styled a JOIN styled b ON a.order_id = b.order_id AND a.style < b.style
            GROUP BY ALL)
        SELECT p.style_a, p.style_b, p.orders_together,
               CAST(p.orders_together AS DOUBLE) / n.all_orders AS support,
               CAST(p.orders_together AS DOUBLE) / sa.orders AS confidence_a_to_b,
               CAST(p.orders_together AS DOUBLE) / sb.orders AS confidence_b_to_a,
               (CAST(p.orders_together AS DOUBLE) / sa.orders) / (CAST(sb.orders AS DOUBLE) / n.all_orders)
                   AS lift
        FROM pairs p CROSS JOIN n JOIN per_style sa ON sa.style = p.style_a
        JOIN per_style sb ON sb.style = p.style_b""",
}


# --- Delta output -----------------------------------------------------------------------------------------

def _delta_ready(table: pa.Table) -> pa.Table:
    """Naive timestamps are UTC (the pipeline's session time zone): store them as Delta ``timestamp``, not
    ``timestamp_ntz``."""
    fields = [pa.field(f.name, pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(f.type) and f.type.tz is None
              else f for f in table.schema]
    return table.cast(pa.schema(fields))


class _Writer:
    def __init__(self, out: Path | None):
        self.out = out
        self.rows: dict[str, int] = {}

    def write(self, name: str, data: pa.Table, partition_by: list[str] | None = None) -> None:
        self.rows[name] = data.num_rows
        if self.out is None:
            return
        layer, table = name.split(".")
        write_deltalake(str(self.out / layer / table), _delta_ready(data), mode="overwrite",
                        partition_by=partition_by, schema_mode="overwrite")


# --- the whole reference ----------------------------------------------------------------------------------

def build(dataset: str | Path, out: str | Path | None = None, run_date: date | None = None,
          threads: int | None = None) -> Result:
    """Run the reference over ``dataset``; write every layer as Delta under ``out`` (nothing when None).

    Returns the gold marts as pandas DataFrames and the wall time of each phase."""
    folder = Path(dataset)
    if not folder.is_dir():
        raise ReferenceError(f"dataset folder not found: {folder}")
    out_dir = Path(out) if out is not None else None
    run_at = datetime.now(timezone.utc)
    run_date = run_date or run_at.date()
    batch = f"{run_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    timings: dict[str, float] = {}
    writer = _Writer(out_dir)
    started = time.perf_counter()

    def phase(name: str, t0: float) -> float:
        now = time.perf_counter()
        timings[name] = now - t0
        return now

    t = time.perf_counter()
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    try:
        for table, spec in SOURCES.items():
            _register_source(con, folder, table)
            _check_integers(con, table)
            origin = (f"excel:{spec['file']}#{spec['sheet']}" if "sheet" in spec else f"file:{spec['file']}")
            con.execute(f"CREATE TABLE bronze_{table} AS SELECT {_typed_select(table)}, "
                        f"TIMESTAMP '{run_at:%Y-%m-%d %H:%M:%S.%f}' AS _ingested_at, "
                        f"'{origin}' AS _source, '{batch}' AS _batch_id FROM raw_{table}")
            con.execute(f"DROP TABLE raw_{table}")
        t = phase("read sources", t)
        for table in SOURCES:
            writer.write(f"bronze.{table}", con.table(f"bronze_{table}").to_arrow_table())
        t = phase("write bronze", t)

        _contract(con)
        t = phase("contract", t)
        for name in ["dim_location", "dim_province", "dim_customer", "dim_product", "_orders", "fct_order_lines",
                     "fct_orders", "dim_date"]:
            con.execute(f"CREATE TABLE {name} AS {SILVER_SQL[name]}")
        dq = _accounting(con, batch, run_at, run_date)
        t = phase("build silver", t)
        for name in SILVER:
            writer.write(f"silver.{name}", con.table(name).to_arrow_table(),
                         ["order_month"] if name == "fct_order_lines" else None)
        for table in SOURCES:
            writer.write(f"quarantine.{table}", con.table(f"quarantine_{table}").to_arrow_table())
        writer.write("ops.dq_results", dq)
        t = phase("write silver", t)

        marts = {}
        for name in MARTS:
            marts[name] = con.sql(GOLD_SQL[name]).to_arrow_table()
        t = phase("build gold", t)
        for name in MARTS:
            writer.write(f"gold.{name}", marts[name])
        phase("write gold", t)
    finally:
        con.close()
    timings["total"] = time.perf_counter() - started
    gold = {name: table.to_pandas() for name, table in marts.items()}
    return Result(gold=gold, timings=timings, dq=dq.to_pandas(), rows=writer.rows, out=out_dir)


def layer_times(timings: dict[str, float]) -> dict[str, float]:
    """The phases summed per layer: bronze (read + write), silver (contract, build, write), gold."""
    return {"bronze": timings["read sources"] + timings["write bronze"],
            "silver": timings["contract"] + timings["build silver"] + timings["write silver"],
            "gold": timings["build gold"] + timings["write gold"], "total": timings["total"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="a dataset folder of the 7 source files")
    parser.add_argument("--out", help="write the Delta tables here (default: a temporary folder, removed)")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: DuckDB's, one per core)")
    parser.add_argument("--json", action="store_true", help="print one JSON line: timings, rows, peak RSS")
    args = parser.parse_args(argv)

    tmp = None if args.out else tempfile.mkdtemp(prefix="apparel-duckdb-")
    try:
        result = build(args.dataset, args.out or tmp, threads=args.threads)
    except ReferenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.json:
        print(json.dumps({"timings": result.timings, "layers": layer_times(result.timings),
                          "rows": result.rows, "peak_kib": peak_kib}))
        return 0
    print(f"duckdb {duckdb.__version__}, deltalake {_version('deltalake')}, dataset {Path(args.dataset).resolve()}")
    print(f"{'phase':<16} {'seconds':>8}")
    for name, seconds in result.timings.items():
        print(f"{name:<16} {seconds:>8.3f}")
    print("per layer: " + ", ".join(f"{k} {v:.3f}s" for k, v in layer_times(result.timings).items()))
    print(f"peak RSS {peak_kib / 1024:.0f} MiB; rows: "
          + ", ".join(f"{k} {v:,}" for k, v in result.rows.items() if k.startswith(("silver.fct", "gold."))))
    if args.out:
        print(f"Delta tables under {Path(args.out).resolve()}")
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    sys.exit(main())
