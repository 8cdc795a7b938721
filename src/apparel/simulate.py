"""``apparel simulate``: realistic orders placed into the PostgreSQL store now, at a steady rate, to drive the
real-time path (store -> change capture -> stream -> Delta) and to check the marts against what it reports.

**An order** is one transaction: an ``orders`` row dated now (UTC, naive, as the store's other timestamps)
and 1-4 ``order_details`` lines of distinct products, each with ``item_price`` = the product's price,
``qty`` 1-3 and ``unit_sales = qty * item_price``. Customers, (city, province) pairs and
products are drawn from the store's own rows, each weighted by how often the store's orders use it (customers
and products plus one, so one never ordered can still appear): the dataset's skew, and every row resolves to
known dimension members. Lines per order and quantities follow the generator's distributions, cut at 4 and 3.

**Ids** continue after the largest ``order_id`` and ``order_detail_id`` in the store when the run starts. The
store's tables have no primary key, so nothing stops a collision: the simulator assumes it is the only writer of
new orders while it runs (another writer would have to take ids above the simulator's range).

**Updates and deletes.** With ``--updates P`` a share P of the ticks also changes the qty of one of the
simulator's own recent lines (one of the last 50 still in the store; ``unit_sales`` follows), and with
``--deletes Q`` a share Q deletes one; each is its own transaction and names the line by
``(order_id, order_detail_id)``, the lines' key in the data contract. An order whose last line is deleted stays,
with no lines: the data model allows it (``fct_orders`` keeps such an order with ``lines`` 0), and the marts'
"orders" count only orders with a line, so the report gives both ``orders`` and ``orders_with_lines``.

**The report** sums the simulator's rows as they stand at the end, net of its updates and deletes: orders,
orders with lines, lines, units and revenue (``sum(qty * item_price)``), the same per minute of ``order_date``,
the updates and deletes done, the achieved rate and the first and last order id created. Summing the store's
rows with ``order_id`` in that range gives the same numbers. ``--log FILE`` writes one JSON object per committed
order, update or delete, with ``committed_at``, the wall clock right after its COMMIT.

The sampling (:class:`StoreSample`) also serves ``bench/incremental_day.py``, on SQLite stores too.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np

from apparel.errors import ConfigError, SourceError
from apparel.generator import LINES_P, QTY_P
from apparel.schemas import SOURCES
from apparel.store import StoreDB

MAX_LINES = 4                # lines per simulated order: 1..4
MAX_QTY = 3                  # qty of a simulated line: 1..3
RECENT_LINES = 50            # updates and deletes pick among the simulator's last lines still in the store
PROGRESS_SECONDS = 5.0       # a progress line this often
FIGURES = ("orders", "orders_with_lines", "lines", "units", "revenue")


def truncated(p: np.ndarray, n: int) -> np.ndarray:
    """The distribution ``p`` over 1..len(p), limited to 1..n and renormalised."""
    head = np.asarray(p[:n], dtype=float)
    return head / head.sum()


# --- what new orders are drawn from ----------------------------------------------------------------

@dataclass(frozen=True)
class Draft:
    """A new order before it has ids and a date: who, where, and its lines as (product_id, qty, item_price)."""

    customer_id: int
    city_id: int
    province_id: int
    lines: tuple[tuple[int, int, int], ...]


_CUSTOMERS_SQL = """
SELECT c.customer_id, 1 + coalesce(o.n, 0)
FROM (SELECT DISTINCT customer_id FROM customers WHERE customer_id IS NOT NULL) c
LEFT JOIN (SELECT customer_id, count(*) AS n FROM orders GROUP BY customer_id) o ON o.customer_id = c.customer_id
ORDER BY 1"""
_PLACES_SQL = """
SELECT city_id, province_id, count(*) FROM orders
WHERE city_id IS NOT NULL AND province_id IS NOT NULL
GROUP BY city_id, province_id ORDER BY 1, 2"""
# a product id whose rows disagree on the price has no price to copy: left out
_PRODUCTS_SQL = """
SELECT p.product_id, p.price, 1 + coalesce(d.n, 0)
FROM (SELECT product_id, min(price) AS price FROM products WHERE product_id IS NOT NULL AND price IS NOT NULL
      GROUP BY product_id HAVING count(DISTINCT price) = 1 AND min(price) >= 0) p
LEFT JOIN (SELECT product_id, count(*) AS n FROM order_details GROUP BY product_id) d ON d.product_id = p.product_id
ORDER BY 1"""


def _ids_and_p(rows: list[tuple], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of (value..., weight): the values as an int array (``width`` columns) and the weights summing to 1."""
    values = np.array([r[:width] for r in rows], dtype=np.int64).reshape(len(rows), width)
    weights = np.array([r[width] for r in rows], dtype=float)
    return values, weights / weights.sum()


@dataclass(frozen=True)
class StoreSample:
    """The store's customers, (city_id, province_id) pairs and products with their price, with how likely each is
    to appear in a new order."""

    customer_ids: np.ndarray
    customer_p: np.ndarray
    places: np.ndarray          # rows of (city_id, province_id)
    place_p: np.ndarray
    product_ids: np.ndarray
    prices: np.ndarray
    product_p: np.ndarray

    @classmethod
    def load(cls, db: StoreDB) -> "StoreSample":
        for name in ("customers", "products", "orders", "order_details"):
            if not db.table_exists(name):
                raise SourceError(f"the store {db.redacted} has no table {name}: run `apparel seed` first")
        customers, customer_p = _ids_and_p(db.query(_CUSTOMERS_SQL), 1)
        places, place_p = _ids_and_p(db.query(_PLACES_SQL), 2)
        products, product_p = _ids_and_p(db.query(_PRODUCTS_SQL), 2)
        if not len(customers) or not len(places) or not len(products):
            raise SourceError(f"the store {db.redacted} has no customers, places (in its orders) or priced products "
                              "to draw from: run `apparel seed` first")
        return cls(customers[:, 0], customer_p, places, place_p, products[:, 0], products[:, 1], product_p)

    def draw(self, rng: np.random.Generator, lines_p: np.ndarray = LINES_P, qty_p: np.ndarray = QTY_P) -> Draft:
        """One order: ``lines_p`` and ``qty_p`` are the distributions of the lines (1..) and of a line's qty (1..);
        the lines have distinct products."""
        customer = int(self.customer_ids[rng.choice(len(self.customer_ids), p=self.customer_p)])
        city, province = self.places[rng.choice(len(self.places), p=self.place_p)]
        k = min(int(rng.choice(np.arange(1, len(lines_p) + 1), p=lines_p)), len(self.product_ids))
        picks = rng.choice(len(self.product_ids), size=k, replace=False, p=self.product_p)
        qtys = rng.choice(np.arange(1, len(qty_p) + 1), size=k, p=qty_p)
        lines = tuple((int(self.product_ids[i]), int(q), int(self.prices[i])) for i, q in zip(picks, qtys))
        return Draft(customer, int(city), int(province), lines)


def max_ids(db: StoreDB) -> tuple[int, int]:
    """The largest ``order_id`` and ``order_detail_id`` in the store (0 when empty)."""
    (max_order,), = db.query("SELECT max(order_id) FROM orders")
    (max_line,), = db.query("SELECT max(order_detail_id) FROM order_details")
    return int(max_order or 0), int(max_line or 0)


# --- pacing and the report's arithmetic (pure) ------------------------------------------------------

def pace(ticks: int, rate: float, action: Callable[[int], None],
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Run ``action(i)`` for i in 0..ticks-1, tick i due ``i / rate`` seconds after the start, then wait out the
    last tick's slot (until ``ticks / rate``). A late tick runs at once and the next keep their times: the
    schedule never drifts, so a run that keeps up lasts ``ticks / rate`` seconds."""
    start = clock()
    for i in range(ticks + 1):
        wait = start + i / rate - clock()
        if wait > 0:
            sleep(wait)
        if i < ticks:
            action(i)


def minute_of(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def figures(orders: dict[int, datetime],
            lines: dict[tuple[int, int], tuple[int, int]]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """Totals and per-minute figures of orders ``{order_id: order_date}`` and their lines
    ``{(order_id, order_detail_id): (qty, item_price)}``: orders, orders_with_lines, lines, units, revenue
    (sum of qty * item_price); a line counts in its order's minute. Minutes in order, as ISO text."""
    per: dict[datetime, dict[str, int]] = {}
    for when in orders.values():
        per.setdefault(minute_of(when), dict.fromkeys(FIGURES, 0))["orders"] += 1
    for (order_id, _), (qty, price) in lines.items():
        row = per[minute_of(orders[order_id])]
        row["lines"] += 1
        row["units"] += qty
        row["revenue"] += qty * price
    for order_id in {order_id for order_id, _ in lines}:
        per[minute_of(orders[order_id])]["orders_with_lines"] += 1
    rows = [{"minute": m.isoformat(), **row} for m, row in sorted(per.items())]
    totals = {k: sum(r[k] for r in rows) for k in FIGURES}
    return totals, rows


# --- the run --------------------------------------------------------------------------------------

def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _order_date() -> datetime:
    """Now in UTC, naive: the store's timestamps have no zone."""
    return _utc_now().replace(tzinfo=None)


_INSERT_ORDER = (f"INSERT INTO orders ({', '.join(SOURCES['orders'].column_names)}) "
                 f"VALUES ({', '.join(['%s'] * len(SOURCES['orders'].columns))})")
_INSERT_LINE = (f"INSERT INTO order_details ({', '.join(SOURCES['order_details'].column_names)}) "
                f"VALUES ({', '.join(['%s'] * len(SOURCES['order_details'].columns))})")
_UPDATE_LINE = ("UPDATE order_details SET qty = %s, unit_sales = %s * item_price "
                "WHERE order_id = %s AND order_detail_id = %s")
_DELETE_LINE = "DELETE FROM order_details WHERE order_id = %s AND order_detail_id = %s"


@dataclass
class Simulation:
    """The simulator's state: its rows as they stand in the store, and what it did."""

    conn: Any
    sample: StoreSample
    rng: np.random.Generator
    next_order_id: int
    next_line_id: int
    log_file: TextIO | None = None
    orders: dict[int, datetime] = field(default_factory=dict)
    lines: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)   # -> (qty, item_price)
    recent: list[tuple[int, int]] = field(default_factory=list)
    updates: int = 0
    deletes: int = 0
    revenue: int = 0         # running, for the progress line

    def _commit(self, record: dict[str, Any]) -> None:
        self.conn.commit()
        record["committed_at"] = _utc_now().isoformat()
        if self.log_file is not None:
            self.log_file.write(json.dumps(record) + "\n")
            self.log_file.flush()

    def place(self) -> None:
        draft = self.sample.draw(self.rng, truncated(LINES_P, MAX_LINES), truncated(QTY_P, MAX_QTY))
        order_id, when = self.next_order_id, _order_date()
        rows = [(self.next_line_id + j, order_id, product_id, qty, price, qty * price)
                for j, (product_id, qty, price) in enumerate(draft.lines)]
        cur = self.conn.cursor()
        cur.execute(_INSERT_ORDER, (order_id, when, draft.customer_id, draft.province_id, draft.city_id))
        cur.executemany(_INSERT_LINE, rows)
        self._commit({"action": "order", "order_id": order_id, "order_date": when.isoformat(),
                      "customer_id": draft.customer_id, "province_id": draft.province_id, "city_id": draft.city_id,
                      "order_detail_ids": [r[0] for r in rows], "units": sum(r[3] for r in rows),
                      "revenue": sum(r[5] for r in rows)})
        self.next_order_id += 1
        self.next_line_id += len(rows)
        self.orders[order_id] = when
        for line_id, _, _, qty, price, sales in rows:
            self.lines[(order_id, line_id)] = (qty, price)
            self.recent.append((order_id, line_id))
            self.revenue += sales
        del self.recent[:-RECENT_LINES]

    def _change(self, sql: str, params: tuple, key: tuple[int, int]) -> None:
        cur = self.conn.cursor()
        cur.execute(sql, params)
        if cur.rowcount != 1:
            self.conn.rollback()
            raise SourceError(f"line (order_id, order_detail_id) = {key} of this run changed {cur.rowcount} rows, "
                              "not 1: another writer touched the simulator's orders")

    def update(self) -> None:
        key = self.recent[int(self.rng.integers(len(self.recent)))]
        before, price = self.lines[key]
        qty = int(self.rng.choice([q for q in range(1, MAX_QTY + 1) if q != before]))
        self._change(_UPDATE_LINE, (qty, qty, *key), key)
        self._commit({"action": "update", "order_id": key[0], "order_detail_id": key[1], "qty_before": before,
                      "qty": qty, "item_price": price, "unit_sales": qty * price})
        self.lines[key] = (qty, price)
        self.revenue += (qty - before) * price
        self.updates += 1

    def delete(self) -> None:
        key = self.recent.pop(int(self.rng.integers(len(self.recent))))
        qty, price = self.lines[key]
        self._change(_DELETE_LINE, key, key)
        self._commit({"action": "delete", "order_id": key[0], "order_detail_id": key[1], "qty": qty,
                      "item_price": price, "unit_sales": qty * price})
        del self.lines[key]
        self.revenue -= qty * price
        self.deletes += 1


def simulate(store_url: str, rate: float, duration: float, updates: float = 0.0, deletes: float = 0.0,
             seed: int | None = None, log_path: str | Path | None = None,
             progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Place ``rate`` orders a second for ``duration`` seconds into the PostgreSQL store at ``store_url`` (with
    ``updates`` and ``deletes`` the shares of ticks that also change or delete a recent line); return the report
    (see :func:`report_lines` for its keys). Ctrl-C stops the run; the report then says ``interrupted``."""
    db = StoreDB(store_url)
    if db.kind != "postgresql":
        raise ConfigError(f"apparel simulate writes to a PostgreSQL store only (APPAREL_STORE_DB=postgresql://...), "
                          f"not {db.redacted}")
    if not rate > 0 or not duration > 0:
        raise ConfigError(f"--rate and --duration must be above 0, got {rate} and {duration}")
    for name, share in (("--updates", updates), ("--deletes", deletes)):
        if not 0 <= share <= 1:
            raise ConfigError(f"{name} is a share of the orders from 0 to 1, got {share}")
    ticks = round(rate * duration)
    if ticks < 1:
        raise ConfigError(f"--rate {rate:g} for --duration {duration:g}s places no order: raise one of them")
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    sample = StoreSample.load(db)
    max_order, max_line = max_ids(db)
    log_file = open(log_path, "w", encoding="utf-8") if log_path else None
    interrupted = False
    try:
        with db.connect() as conn:
            sim = Simulation(conn, sample, np.random.default_rng(seed), max_order + 1, max_line + 1, log_file)
            started_at, t0 = _utc_now(), time.monotonic()
            last_progress = t0

            def tick(i: int) -> None:
                nonlocal last_progress
                change, drop = sim.rng.random(), sim.rng.random()  # drawn every tick: the same seed, the same run
                sim.place()
                if change < updates and sim.recent:
                    sim.update()
                if drop < deletes and sim.recent:
                    sim.delete()
                now = time.monotonic()
                if now - last_progress >= PROGRESS_SECONDS:
                    last_progress = now
                    orders = len(sim.orders)
                    progress(f"[simulate] {now - t0:5.0f}s {orders:,} orders ({orders / (now - t0):.1f}/s), "
                             f"{len(sim.lines):,} lines, Rp {sim.revenue:,}, {sim.updates} updates, "
                             f"{sim.deletes} deletes")

            try:
                pace(ticks, rate, tick)
            except KeyboardInterrupt:
                conn.rollback()
                interrupted = True
            elapsed = time.monotonic() - t0
    finally:
        if log_file is not None:
            log_file.close()
    totals, per_minute = figures(sim.orders, sim.lines)
    return {
        "store": db.redacted, "seed": seed, "target_rate": float(rate), "duration": float(duration),
        "started_at": started_at.isoformat(), "finished_at": _utc_now().isoformat(),
        "elapsed_seconds": round(elapsed, 3), "achieved_rate": round(len(sim.orders) / elapsed, 3),
        "interrupted": interrupted,
        "first_order_id": max_order + 1 if sim.orders else None,
        "last_order_id": sim.next_order_id - 1 if sim.orders else None,
        **totals, "updates": sim.updates, "deletes": sim.deletes, "per_minute": per_minute,
    }


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report for a person. Its keys: store, seed, target_rate, duration, started_at, finished_at (ISO UTC),
    elapsed_seconds, achieved_rate, interrupted, first_order_id, last_order_id, orders, orders_with_lines, lines,
    units, revenue, updates, deletes, and per_minute (a list of {minute, orders, orders_with_lines, lines,
    units, revenue}, minute as ISO text of the order_date's minute)."""
    r = report
    ids = f"order ids {r['first_order_id']}..{r['last_order_id']}" if r["orders"] else "no orders"
    out = [f"simulated {r['orders']:,} orders ({ids}) in {r['elapsed_seconds']:.1f}s: "
           f"{r['achieved_rate']:.2f} orders/s (target {r['target_rate']:g}/s), seed {r['seed']}"
           + (", interrupted" if r["interrupted"] else ""),
           f"  store now holds {r['orders_with_lines']:,} of them with lines, {r['lines']:,} lines, "
           f"{r['units']:,} units, revenue Rp {r['revenue']:,} (net of {r['updates']} updates and "
           f"{r['deletes']} deletes)",
           f"  {'minute (UTC)':<17} {'orders':>7} {'w/ lines':>8} {'lines':>7} {'units':>7} {'revenue':>14}"]
    for m in r["per_minute"]:
        out.append(f"  {m['minute'][:16].replace('T', ' '):<17} {m['orders']:>7,} {m['orders_with_lines']:>8,} "
                   f"{m['lines']:>7,} {m['units']:>7,} {m['revenue']:>14,}")
    return out
