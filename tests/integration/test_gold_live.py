"""gold.dm_sales_live applied to a real Delta lakehouse by ``refresh_live`` (apparel.jobs.gold): created on first
use, no commit when nothing differs, minutes that left the window deleted and unchanged minutes left alone,
and only the order months of the window read. Expected rows are worked out by hand from docs/data_model.md."""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path

from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from apparel.catalog import Catalog
from apparel.jobs.gold import refresh_live
from conftest import settings_in

LINES_DDL = ("order_id BIGINT, order_date TIMESTAMP, customer_id BIGINT, qty BIGINT, line_revenue BIGINT, "
             "order_month DATE")
LIVE_DDL = "minute TIMESTAMP, orders BIGINT, units BIGINT, revenue BIGINT, customers BIGINT"


def lines(spark, rows):
    return spark.createDataFrame([(*r, date(r[1].year, r[1].month, 1)) for r in rows], LINES_DDL)


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
