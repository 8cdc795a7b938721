"""gold.dm_sales_live applied to a real Delta lakehouse by ``refresh_live`` (apparel.jobs.gold): created on first
use, no commit when nothing differs, minutes that left the window deleted and unchanged minutes left alone,
and only the order months of the window read. Expected rows are worked out by hand from docs/data_model.md."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from apparel.catalog import TABLES, Catalog
from apparel.gold import live_window_start
from apparel.jobs.gold import refresh_live
from conftest import settings_in

LINES_DDL = TABLES["silver.fct_order_lines"].ddl  # the declared fact (catalog.overwrite checks it)
LIVE_DDL = "minute TIMESTAMP, orders BIGINT, units BIGINT, revenue BIGINT, customers BIGINT"


def lines(spark, rows):
    """Fact lines from (order_id, order_date, customer_id, qty, line_revenue); line ids order_id * 100 + the row's
    place; one product, city and province (the live mart reads none of them)."""
    return spark.createDataFrame([
        (oid * 100 + i, oid, when, int(when.strftime("%Y%m%d")), cust, cust, 1, 1, 1, 1, qty, revenue // qty, revenue,
         date(when.year, when.month, 1))
        for i, (oid, when, cust, qty, revenue) in enumerate(rows)], LINES_DDL)


def test_refresh_live_creates_then_merges_only_what_changed(spark, tmp_path):
    catalog = Catalog(settings_in(tmp_path))
    facts = "silver.fct_order_lines"
    catalog.overwrite(lines(spark, [
        (1, datetime(2024, 1, 15, 9, 0), 1, 1, 100),       # an old month, outside every window below
        (2, datetime(2024, 2, 28, 10, 0), 1, 1, 100),      # before the first window
        (3, datetime(2024, 2, 29, 9, 0, 15), 2, 2, 200),   # in the first window, not the second
        (4, datetime(2024, 3, 1, 8, 30), 3, 1, 50),
        (5, datetime(2024, 3, 1, 8, 30, 40), 3, 2, 60),    # customer 3 again, same minute
        (6, datetime(2024, 3, 2, 7, 0), 4, 1, 70),         # later than the first now
    ]), facts, partition_by=["order_month"])
    # the January partition's files vanish: a read of all months fails, the window's months do not need them
    january = Path(catalog.path(facts)) / "order_month=2024-01-01"
    shutil.rmtree(january)

    now = datetime(2024, 3, 1, 12, 0)  # window from 2024-02-29 00:00
    created = refresh_live(spark, catalog, now)
    assert (created["upserts"], created["deletes"], created["version"]) == (3, 0, 0)
    expected = spark.createDataFrame([
        (datetime(2024, 2, 29, 9, 0), 1, 2, 200, 1),
        (datetime(2024, 3, 1, 8, 30), 2, 3, 110, 1),
        (datetime(2024, 3, 2, 7, 0), 1, 1, 70, 1),
    ], LIVE_DDL)
    live = catalog.read(spark, "gold.dm_sales_live")
    assertSchemaEqual(live.schema, expected.schema)
    assertDataFrameEqual(live, expected)

    # nothing changed: no commit
    assert refresh_live(spark, catalog, now) == {"upserts": 0, "deletes": 0, "version": None, "metrics": {}}
    assert catalog.last_commit(spark, "gold.dm_sales_live")["version"] == 0

    # a line arrives in the minute 07:00 of March 2, and the next day begins: Feb 29 leaves the window
    new_line = lines(spark, [(7, datetime(2024, 3, 2, 7, 0, 30), 5, 3, 30)])
    new_line.write.format("delta").mode("append").save(catalog.path(facts))
    merged = refresh_live(spark, catalog, datetime(2024, 3, 2, 12, 0))
    assert (merged["upserts"], merged["deletes"], merged["version"]) == (1, 1, 1)
    m = merged["metrics"]
    # the unchanged minute 2024-03-01 08:30 is neither updated nor inserted
    assert [int(m[f"numTargetRows{k}"]) for k in ("Updated", "Inserted", "Deleted")] == [1, 0, 1]
    assertDataFrameEqual(catalog.read(spark, "gold.dm_sales_live"), spark.createDataFrame([
        (datetime(2024, 3, 1, 8, 30), 2, 3, 110, 1),
        (datetime(2024, 3, 2, 7, 0), 2, 4, 100, 2),
    ], LIVE_DDL))


# --- the stream's fast lane: events silver has not applied yet, judged by the contract (apparel.jobs.live) -------

NOW = datetime(2026, 11, 28, 12, 0)  # window from 2026-11-27 00:00
EPOCH = datetime(1970, 1, 1)


def _micros(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def _order(order_id, when, customer_id):
    return {"order_id": order_id, "order_date": _micros(when), "customer_id": customer_id, "province_id": 1,
            "city_id": 2}


def _line(detail_id, order_id, qty, price, sales=None):
    return {"order_detail_id": detail_id, "order_id": order_id, "product_id": 5, "qty": qty, "item_price": price,
            "unit_sales": qty * price if sales is None else sales}


def _events(spark, catalog, table, changes, batch):
    """Debezium events (op, before, after) of bronze.cdc_<table>, parsed as the stream parses them, at the
    topic's next offsets."""
    import json

    from apparel.cdc_events import parse
    from apparel.schemas import SOURCES

    first = catalog.read(spark, f"bronze.cdc_{table}").count()
    values = [json.dumps({"op": op, "before": b, "after": a,
                          "source": {"lsn": 100 + i, "txId": 1, "ts_us": _micros(NOW), "snapshot": "false"}})
              for i, (op, b, a) in enumerate(changes)]
    records = spark.createDataFrame([(None, bytearray(v.encode()), f"t.public.{table}", 0, first + i)
                                     for i, v in enumerate(values)],
                                    "key BINARY, value BINARY, topic STRING, partition INT, offset BIGINT")
    return parse(records, SOURCES[table], batch, NOW).localCheckpoint()


def _land(spark, catalog, table, changes, batch, landed=None):
    """Append those events to bronze.cdc_<table> as the stream does; returns the table's version (and keeps the
    parsed events in ``landed``, by table, for the fast lane)."""
    events = _events(spark, catalog, table, changes, batch)
    events.write.format("delta").mode("append").save(catalog.path(f"bronze.cdc_{table}"))
    if landed is not None:
        landed[table] = events
    return catalog.version(spark, f"bronze.cdc_{table}")


# the times of orders 1-4 of the tests below
T1, T2, T3, T4 = (datetime(2026, 11, 28, 9, 30, 10), datetime(2026, 11, 28, 9, 30, 40),
                  datetime(2026, 11, 28, 10, 0), datetime(2026, 11, 28, 11, 15, 5))
L12, L21, L31 = _line(12, 1, 1, 50), _line(21, 2, 1, 30), _line(31, 3, 3, 10)


def _silver_applied(spark, tmp_path):
    """What silver applied: three orders, four lines (snapshot reads), and the facts it stored from them, with
    the live mart refreshed from those. Returns the catalog and the events tables' versions silver consumed."""
    from apparel.jobs.stream import Stream

    settings = settings_in(tmp_path)
    catalog = Catalog(settings)
    Stream(spark, settings, log=lambda m: None).ensure_tables()  # the events tables, change data feed on
    orders = [_order(1, T1, 7), _order(2, T2, 8), _order(3, T3, 7)]
    consumed = {"orders": _land(spark, catalog, "orders", [("r", None, o) for o in orders], "b0"),
                "order_details": _land(spark, catalog, "order_details",
                                       [("r", None, x) for x in (_line(11, 1, 2, 100), L12, L21, L31)], "b0")}
    catalog.overwrite(lines(spark, [(1, T1, 7, 2, 200), (1, T1, 7, 1, 50), (2, T2, 8, 1, 30), (3, T3, 7, 3, 30)]),
                      "silver.fct_order_lines", partition_by=["order_month"])
    refresh_live(spark, catalog, NOW)
    assertDataFrameEqual(catalog.read(spark, "gold.dm_sales_live"), spark.createDataFrame([
        (datetime(2026, 11, 28, 9, 30), 2, 4, 280, 2), (datetime(2026, 11, 28, 10, 0), 1, 3, 30, 1)], LIVE_DDL))
    return catalog, consumed


def test_the_fast_lane_counts_pending_events_as_silver_will(spark, tmp_path):
    from apparel.jobs.live import pending

    catalog, consumed = _silver_applied(spark, tmp_path)
    t1, t3, t4, l12, l21 = T1, T3, T4, L12, L21

    # landed since: line 12's quantity 1 -> 4, line 21 deleted (order 2 is left without lines), a new order 4
    # with a good line and one of quantity 0, a line whose amount does not match, a line of an unknown order
    o4 = _order(4, t4, 9)
    versions = {"orders": _land(spark, catalog, "orders", [("c", None, o4)], "b1"),
                "order_details": _land(spark, catalog, "order_details", [
                    ("u", l12, _line(12, 1, 4, 50)), ("d", l21, None), ("c", None, _line(41, 4, 2, 25)),
                    ("c", None, _line(42, 4, 0, 25)), ("c", None, _line(13, 1, 1, 10, sales=11)),
                    ("c", None, _line(51, 5, 1, 10))], "b1")}
    ahead = pending(spark, catalog, consumed, versions)
    assert sorted(r[0] for r in ahead.scope.collect()) == [1, 2, 4, 5]
    merged = refresh_live(spark, catalog, NOW, ahead, touched_only=True)
    # 09:30: order 1 alone (2 x 100 + 4 x 50); 10:00 untouched; 11:15: order 4's valid line (2 x 25)
    expected = spark.createDataFrame([
        (datetime(2026, 11, 28, 9, 30), 1, 6, 400, 1), (datetime(2026, 11, 28, 10, 0), 1, 3, 30, 1),
        (datetime(2026, 11, 28, 11, 15), 1, 2, 50, 1)], LIVE_DDL)
    assertDataFrameEqual(catalog.read(spark, "gold.dm_sales_live"), expected)
    m = merged["metrics"]
    assert [int(m[f"numTargetRows{k}"]) for k in ("Updated", "Inserted", "Deleted")] == [1, 1, 0]

    # silver catches up: its facts now hold those lines and it consumed those versions; the figures stay
    catalog.overwrite(lines(spark, [(1, t1, 7, 2, 200), (1, t1, 7, 4, 200), (3, t3, 7, 3, 30), (4, t4, 9, 2, 50)]),
                      "silver.fct_order_lines", partition_by=["order_month"])
    assert pending(spark, catalog, versions) is None
    assert refresh_live(spark, catalog, NOW)["version"] is None
    assertDataFrameEqual(catalog.read(spark, "gold.dm_sales_live"), expected)


def test_the_lane_judges_each_batch_as_the_slow_path_does(spark, tmp_path):
    """The stream's state after its first micro-batch (apparel.jobs.live.LiveLane): each later batch judges only
    its own orders, reading the history of an order it has not seen from the events tables, and leaves the live
    mart as the slow path (silver's facts with every pending event judged on top) computes it."""
    from apparel.jobs.live import LiveLane, pending

    catalog, consumed = _silver_applied(spark, tmp_path)
    t4, t6, l12, l21, l31 = T4, datetime(2026, 11, 28, 11, 59, 59, 999999), L12, L21, L31
    lane = LiveLane.load(spark, catalog, live_window_start(NOW), consumed, None)
    assert (lane.known, sorted(lane.orders)) == (3, [1, 2, 3])

    # batch 1, as in the test above: orders 1 and 2 (at or below the highest known id: their history is read),
    # a new order 4 and a line of an unknown order 5 (above it: their events are all in the batch)
    batch = {}
    versions = {"orders": _land(spark, catalog, "orders", [("c", None, _order(4, t4, 9))], "b1", batch),
                "order_details": _land(spark, catalog, "order_details", [
                    ("u", l12, _line(12, 1, 4, 50)), ("d", l21, None), ("c", None, _line(41, 4, 2, 25)),
                    ("c", None, _line(42, 4, 0, 25)), ("c", None, _line(13, 1, 1, 10, sales=11)),
                    ("c", None, _line(51, 5, 1, 10))], "b1", batch)}
    done = lane.apply(batch, versions)
    assert (done["orders"], done["read"], done["minutes"]) == (4, 2, 2)  # 09:30 changed, 11:15 new
    assertDataFrameEqual(catalog.read(spark, "gold.dm_sales_live"), spark.createDataFrame([
        (datetime(2026, 11, 28, 9, 30), 1, 6, 400, 1), (datetime(2026, 11, 28, 10, 0), 1, 3, 30, 1),
        (datetime(2026, 11, 28, 11, 15), 1, 2, 50, 1)], LIVE_DDL))

    # batch 2: order 3's line 3 -> 5 units (its history is read), order 4's good line 2 -> 3 units (known to the
    # lane since batch 1: nothing read), a new order 6 in the window's last microsecond of 11:59
    batch = {}
    l41 = _line(41, 4, 2, 25)
    versions = {"orders": _land(spark, catalog, "orders", [("c", None, _order(6, t6, 8))], "b2", batch),
                "order_details": _land(spark, catalog, "order_details", [
                    ("u", l31, _line(31, 3, 5, 10)), ("u", l41, _line(41, 4, 3, 25)),
                    ("c", None, _line(61, 6, 1, 20))], "b2", batch)}
    done = lane.apply(batch, versions)
    assert (done["orders"], done["read"], done["minutes"]) == (3, 1, 3)
    expected = spark.createDataFrame([
        (datetime(2026, 11, 28, 9, 30), 1, 6, 400, 1), (datetime(2026, 11, 28, 10, 0), 1, 5, 50, 1),
        (datetime(2026, 11, 28, 11, 15), 1, 3, 75, 1), (datetime(2026, 11, 28, 11, 59), 1, 1, 20, 1)], LIVE_DDL)
    assertDataFrameEqual(catalog.read(spark, "gold.dm_sales_live"), expected)
    assert done["version"] == catalog.version(spark, "gold.dm_sales_live")
    # a batch that changes no minute's figures writes nothing: order 3's line back and forth
    batch = {}
    versions = {"orders": catalog.version(spark, "bronze.cdc_orders"),
                "order_details": _land(spark, catalog, "order_details", [
                    ("u", _line(31, 3, 5, 10), _line(31, 3, 4, 10)), ("u", _line(31, 3, 4, 10), _line(31, 3, 5, 10))],
                    "b3", batch)}
    assert lane.apply(batch, versions) == {"orders": 1, "read": 0, "minutes": 0, "version": None}
    # the slow path over every event silver has not applied finds nothing to change
    assert refresh_live(spark, catalog, NOW, pending(spark, catalog, consumed, versions))["version"] is None
    assertDataFrameEqual(catalog.read(spark, "gold.dm_sales_live"), expected)
