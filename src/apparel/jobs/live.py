"""``gold.dm_sales_live`` ahead of silver: the change events silver has not applied yet, judged by the contract.

The stream lands each micro-batch in seconds, but applying it to silver (the contract's bookkeeping, four
MERGEs, the accounting, the ``ops`` records) takes several times longer. So the live mart does not wait for
silver: it is the fact lines of ``silver.fct_order_lines`` with the orders that have *pending* events (landed in
``bronze.cdc_orders``/``bronze.cdc_order_details`` after the versions silver last consumed) replaced by what the
contract makes of all their events now:

- the pending scope: the order ids (before and after each change) of the events after silver's versions, read
  from Delta's change data feed of the events tables, as silver's own incremental run reads them;
- their rows: the image of every event of those orders (:func:`apparel.cdc_events.image`), judged by the same
  rules as silver (:func:`apparel.contract.judged`: duplicates, row rules, key collisions, missing orders),
  so a line that silver will quarantine is never counted, not even for a moment;
- their revenue: :func:`apparel.silver.line_revenue`, as the fact's.

Orphan foreign keys do not matter here (the live mart shows no dimension), and the scope holds every row of
its orders, so the overlay equals what silver will store for them: when silver catches up, the live mart's
figures do not move. :func:`pending` builds the overlay; :func:`apparel.jobs.gold.refresh_live` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from apparel.catalog import Catalog
from apparel.cdc_events import events_for_keys, image
from apparel.contract import judged, valid_rows
from apparel.schemas import SOURCES
from apparel.silver import line_revenue

FACTS = ("orders", "order_details")
LIVE_COLUMNS = ["order_id", "order_date", "customer_id", "qty", "line_revenue"]


@dataclass
class Pending:
    """The order ids with events silver has not applied (``scope``) and their valid lines (``lines``, the
    columns of :data:`LIVE_COLUMNS`), at the events tables' ``versions``."""
    scope: object
    lines: object
    versions: dict[str, int]


def consumed_versions(spark, catalog: Catalog) -> dict[str, int]:
    """The version of each captured table's events that silver last consumed (missing: never)."""
    from apparel.jobs.silver import consumed_batches

    stored = consumed_batches(spark, catalog)
    return {t: stored[f"cdc_{t}"].version for t in FACTS if f"cdc_{t}" in stored}


def pending(spark, catalog: Catalog, consumed: dict[str, int], versions: dict[str, int] | None = None):
    """The overlay for the events after ``consumed`` up to ``versions`` (default: the tables' current versions).
    None when silver has not consumed the captured tables yet (its first run over them is a full one) or when
    nothing is pending."""
    from pyspark.sql import functions as F

    if any(t not in consumed for t in FACTS):
        return None
    if versions is None:
        versions = {t: catalog.version(spark, f"bronze.cdc_{t}") for t in FACTS}
    keys = []
    for t in FACTS:
        if versions[t] <= consumed[t]:
            continue
        events = (spark.read.format("delta").option("readChangeFeed", "true")
                  .option("startingVersion", consumed[t] + 1).option("endingVersion", versions[t])
                  .load(catalog.path(f"bronze.cdc_{t}")).where("_change_type = 'insert'"))
        keys.append(events.select(F.explode(F.array("_key_before", "_key_after")).alias("order_id")))
    if not keys:
        return None
    scope = keys[0] if len(keys) == 1 else keys[0].unionByName(keys[1])
    # a few thousand ids at most (what silver has not caught up with): one job, then a literal table
    ids = [r[0] for r in scope.where("order_id IS NOT NULL").distinct().collect()]
    if not ids:
        return None
    scope = spark.createDataFrame([(i,) for i in ids], "order_id BIGINT")

    def rows(t: str):
        events = spark.read.format("delta").option("versionAsOf", versions[t]).load(catalog.path(f"bronze.cdc_{t}"))
        return image(events_for_keys(events, ids, "order_id"), SOURCES[t])

    orders = valid_rows(judged(rows("orders"), SOURCES["orders"]), SOURCES["orders"])
    lines = valid_rows(judged(rows("order_details"), SOURCES["order_details"], orders), SOURCES["order_details"])
    facts = lines.join(orders.select("order_id", "order_date", "customer_id"), "order_id").select(
        "order_id", "order_date", "customer_id", "qty", line_revenue().alias("line_revenue"))
    return Pending(scope, facts.localCheckpoint(), dict(versions))
