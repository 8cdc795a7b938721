"""Append one more day of orders to the store database: what a daily incremental run picks up.

The new orders take ids after the largest ``order_id``, their lines ids after the largest ``order_detail_id``,
and the day after the latest ``order_date`` (times spread over that day). Customers, (city, province) pairs
and products with their prices are drawn from the store's own rows, weighted as its orders use them, by
``apparel.simulate.StoreSample`` (which ``apparel simulate`` uses too), so every new row passes the data
contract and resolves to known dimension members. The number of orders defaults to the store's average per
day (about 19 at scale 1, 1,900 at scale 100); lines per order and quantities follow the generator's shape.
The same store and seed give the same rows.

Used by ``bench/scale_bench.py`` and ``bench/pipeline_bench.py``; also a script::

    APPAREL_STORE_DB=sqlite:///var/store.db .venv/bin/python bench/incremental_day.py [--orders N] [--seed S]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from apparel.config import load_settings
from apparel.generator import LINES_P, QTY_P
from apparel.schemas import SOURCES
from apparel.simulate import StoreSample, max_ids
from apparel.store import StoreDB


@dataclass(frozen=True)
class AppendedDay:
    day: date
    orders: int
    lines: int
    first_order_id: int
    revenue: int


def _as_datetime(value) -> datetime:
    """SQLite holds timestamps as text, PostgreSQL as timestamps."""
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def append_day(store_url: str, orders: int | None = None, seed: int = 0) -> AppendedDay:
    """Insert one day of new orders and their lines into the store at ``store_url``; return what was added."""
    db = StoreDB(store_url)
    n_orders, max_order, first, last = db.query(
        "SELECT count(*), max(order_id), min(order_date), max(order_date) FROM orders")[0]
    if not n_orders or last is None:
        raise ValueError(f"the store {db.redacted} holds no dated orders: seed it first")
    first, last = _as_datetime(first), _as_datetime(last)
    sample = StoreSample.load(db)
    _, max_line = max_ids(db)
    days = (last.date() - first.date()).days + 1
    n = orders if orders is not None else max(1, round(n_orders / days))
    day = last.date() + timedelta(days=1)

    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 86_400, size=n))
    order_rows, line_rows = [], []
    line_id, revenue = max_line, 0
    for i in range(n):
        order_id = int(max_order) + 1 + i
        when = datetime.combine(day, datetime.min.time()) + timedelta(seconds=int(seconds[i]))
        draft = sample.draw(rng, LINES_P, QTY_P)
        order_rows.append((order_id, when, draft.customer_id, draft.province_id, draft.city_id))
        for product_id, qty, price in draft.lines:
            line_id += 1
            line_rows.append((line_id, order_id, product_id, qty, price, qty * price))
            revenue += qty * price
    db.insert_rows(SOURCES["orders"], order_rows)
    db.insert_rows(SOURCES["order_details"], line_rows)
    return AppendedDay(day, len(order_rows), len(line_rows), int(max_order) + 1, revenue)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="store URL (default: the settings' APPAREL_STORE_DB)")
    parser.add_argument("--orders", type=int, help="orders to add (default: the store's average per day)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    added = append_day(args.store or load_settings().store_db, args.orders, args.seed)
    print(f"added {added.orders:,} orders ({added.lines:,} lines, Rp {added.revenue:,}) on {added.day}, "
          f"order ids from {added.first_order_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
