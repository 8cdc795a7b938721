"""`apparel simulate` as a user runs it, against the project's PostgreSQL: the store's rows of the orders it
created, summed with pandas, give exactly its report; every line is consistent and refers to existing members;
its log has one line per action; it keeps its rate. A SQLite store is refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from apparel.config import PROJECT_ROOT
from apparel.seed import seed_generated
from conftest import project_env, quiet

APPAREL = str(Path(sys.executable).parent / "apparel")
RATE, DURATION = 20, 3
FIGURES = ["orders", "orders_with_lines", "lines", "units", "revenue"]


def apparel(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([APPAREL, *args], env=env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)


def frame(url: str, sql: str, params=()) -> pd.DataFrame:
    with psycopg.connect(url) as conn:
        cur = conn.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def per_minute_of(orders: pd.DataFrame, lines: pd.DataFrame) -> pd.DataFrame:
    """The report's per-minute figures, computed from the store's rows."""
    minute = orders.set_index("order_id")["order_date"].dt.floor("min")
    lines = lines.assign(minute=lines["order_id"].map(minute), revenue=lines["qty"] * lines["item_price"])
    by_line = lines.groupby("minute").agg(orders_with_lines=("order_id", "nunique"), lines=("order_id", "size"),
                                          units=("qty", "sum"), revenue=("revenue", "sum"))
    out = minute.value_counts().rename("orders").to_frame().join(by_line).fillna(0).astype("int64")
    return out.rename_axis("minute").sort_index().reset_index()[["minute", *FIGURES]]


@pytest.mark.postgres
def test_simulated_orders_match_the_report(make_settings, tmp_path):
    settings = make_settings("postgres")
    seed_generated(settings, scale=0.1, seed=3, log=quiet)
    url = settings.store_db
    (start_order,), = frame(url, "SELECT max(order_id) FROM orders").itertuples(index=False)
    (start_line,), = frame(url, "SELECT max(order_detail_id) FROM order_details").itertuples(index=False)
    log = tmp_path / "simulate.jsonl"
    env = project_env(tmp_path, url) | {"APPAREL_ENV": "ci"}

    proc = apparel(env, "simulate", "--rate", str(RATE), "--duration", str(DURATION), "--updates", "0.2",
                   "--deletes", "0.1", "--seed", "7", "--json", "--log", str(log))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)

    orders = frame(url, "SELECT * FROM orders WHERE order_id > %s ORDER BY order_id", (start_order,))
    lines = frame(url, "SELECT * FROM order_details WHERE order_id > %s ORDER BY order_id, order_detail_id",
                  (start_order,))
    # the orders it created: consecutive ids after the store's largest, dated during the run
    assert report["orders"] == len(orders) == RATE * DURATION
    assert orders["order_id"].tolist() == list(range(start_order + 1, start_order + 1 + len(orders)))
    assert (report["first_order_id"], report["last_order_id"]) == (start_order + 1, start_order + len(orders))
    started = pd.Timestamp(report["started_at"]).tz_convert(None)
    finished = pd.Timestamp(report["finished_at"]).tz_convert(None)
    assert orders["order_date"].between(started, finished).all()
    assert orders["order_date"].is_monotonic_increasing
    assert lines["order_detail_id"].min() > start_line and lines["order_detail_id"].is_unique

    # the report's numbers are the sums of those rows, in total and per minute of order_date
    expected = per_minute_of(orders, lines)
    reported = pd.DataFrame(report["per_minute"])
    reported["minute"] = pd.to_datetime(reported["minute"])
    pd.testing.assert_frame_equal(reported, expected)
    assert {k: report[k] for k in FIGURES} == {
        "orders": len(orders), "orders_with_lines": lines["order_id"].nunique(), "lines": len(lines),
        "units": int(lines["qty"].sum()), "revenue": int((lines["qty"] * lines["item_price"]).sum())}

    # every line is consistent, priced as its product, and refers to existing customers, products and cities
    products = frame(url, "SELECT product_id, price FROM products")
    priced = lines.merge(products, on="product_id", how="left", validate="many_to_one")
    assert (priced["unit_sales"] == priced["qty"] * priced["item_price"]).all()
    assert (priced["item_price"] == priced["price"]).all()
    assert priced["qty"].between(1, 3).all()
    assert not lines.duplicated(["order_id", "product_id"]).any()
    assert lines.groupby("order_id").size().max() <= 4
    customers = frame(url, "SELECT customer_id FROM customers")
    assert orders["customer_id"].isin(customers["customer_id"]).all()
    cities = pd.read_excel(Path(settings.landing) / "cities.xlsx", sheet_name="Worksheet")
    places = set(zip(cities["city_id"], cities["province_id"]))
    assert set(zip(orders["city_id"], orders["province_id"])) <= places

    # the log: one line per committed action, agreeing with the store
    actions = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = pd.Series([a["action"] for a in actions]).value_counts().to_dict()
    assert report["updates"] > 0 and report["deletes"] > 0
    assert kinds == {"order": report["orders"], "update": report["updates"], "delete": report["deletes"]}
    committed = [datetime.fromisoformat(a["committed_at"]) for a in actions]
    assert committed == sorted(committed) and all(c.utcoffset().total_seconds() == 0 for c in committed)
    created = {(a["order_id"], i) for a in actions if a["action"] == "order" for i in a["order_detail_ids"]}
    deleted = {(a["order_id"], a["order_detail_id"]) for a in actions if a["action"] == "delete"}
    assert set(zip(lines["order_id"], lines["order_detail_id"])) == created - deleted
    last_qty = {(a["order_id"], a["order_detail_id"]): a["qty"] for a in actions if a["action"] == "update"}
    stored_qty = lines.set_index(["order_id", "order_detail_id"])["qty"].to_dict()
    assert {k: stored_qty[k] for k in last_qty if k not in deleted} == {
        k: q for k, q in last_qty.items() if k not in deleted}

    # it keeps its rate
    assert RATE * 0.75 <= report["achieved_rate"] <= RATE * 1.25
    assert RATE * 0.75 <= len(orders) / (finished - started).total_seconds() <= RATE * 1.25


def test_a_sqlite_store_is_a_one_line_error(tmp_path):
    env = project_env(tmp_path) | {"APPAREL_ENV": "ci"}
    proc = apparel(env, "simulate", "--rate", "5", "--duration", "1")
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("error: ") and "PostgreSQL" in proc.stderr and "sqlite:///" in proc.stderr
    assert not (tmp_path / "store.db").exists()
