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
from decimal import Decimal

from apparel.catalog import Catalog, run_parallel
from apparel.cdc_events import changed_keys, event_type, events_for_keys, image
from apparel.contract import judged, valid_rows
from apparel.runtime import Steps
from apparel.schemas import SOURCES
from apparel.silver import line_revenue
from apparel.spark import local_frame, pin

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
    keys = [changed_keys(spark, catalog.path(f"bronze.cdc_{t}"), consumed[t], versions[t]).select("order_id")
            for t in FACTS if versions[t] > consumed[t]]
    if not keys:
        return None
    scope = keys[0] if len(keys) == 1 else keys[0].unionByName(keys[1])
    # a few thousand ids at most (what silver has not caught up with): one job, then a literal table
    ids = [r[0] for r in scope.where("order_id IS NOT NULL").distinct().collect()]
    if not ids:
        return None
    scope = local_frame(spark, [(i,) for i in ids], "order_id BIGINT")

    def rows(t: str):
        return events_for_keys(spark.read.format("delta").option("versionAsOf", versions[t])
                               .load(catalog.path(f"bronze.cdc_{t}")), ids, "order_id")

    lines = judged_lines(rows("orders"), rows("order_details")).join(F.broadcast(scope), "order_id", "left_semi")
    return Pending(scope, lines.transform(pin), dict(versions))


def judged_lines(orders_events, details_events):
    """The valid fact lines (:data:`LIVE_COLUMNS`) that the contract makes of the events of some orders (every
    event of each: :func:`apparel.cdc_events.image` needs an order's whole history). An event that moved a row
    to another order also brings that order's row, judged on partial history: callers keep the lines of the
    orders they asked for (the rules never compare rows of different orders)."""
    orders = valid_rows(judged(image(orders_events, SOURCES["orders"]), SOURCES["orders"]), SOURCES["orders"])
    lines = valid_rows(judged(image(details_events, SOURCES["order_details"]), SOURCES["order_details"], orders),
                       SOURCES["order_details"])
    return lines.join(orders.select("order_id", "order_date", "customer_id"), "order_id").select(
        "order_id", "order_date", "customer_id", "qty", line_revenue().alias("line_revenue"))


# what the lane keeps of an event: enough to rebuild its image, and its place in Kafka (which makes it unique)
EVENT_COLUMNS = ["op", "before", "after", "_key_before", "_key_after", "_batch_id", "_topic", "_partition",
                 "_offset"]
# JSON keeps timestamps to the microsecond (Spark's default format stops at milliseconds), in the session's zone
JSON = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"}


class LiveLane:
    """The fast lane's state in the stream's driver, so that a micro-batch judges only its own orders and
    rewrites the live mart from memory, without reading silver, the change data feed or the mart again.

    - ``orders``: each order of the live window that has valid lines, with its minute, customer, units and
      revenue (the sums of its valid fact lines). Loaded once as :func:`apparel.jobs.gold.refresh_live` sees
      them (silver's fact lines with the pending orders judged on top), then replaced order by order as
      micro-batches judge them;
    - ``mart``: ``gold.dm_sales_live``'s rows, per minute, from ``orders`` (:meth:`_minute`, the grain of
      :func:`apparel.gold.dm_sales_live`: distinct orders and customers, units, revenue cast to whole units);
    - ``events``: every change event of the orders judged since the load (as JSON, per order id and table). An
      order's history is complete in the lane when it was read from the events tables the first time a
      micro-batch touched it, or when its id is above ``known``, the highest order id in the events tables at
      the load: every event of a higher id came in a micro-batch since, and each one passes here.

    Each micro-batch (:meth:`apply`): its events join their orders' histories (the histories of ids at or
    below ``known`` seen for the first time are read from the events tables, by key), the contract judges
    those orders (:func:`judged_lines`: the same image, rules and revenue as silver), their figures replace
    the old ones, the minutes either touched are recomputed, and when one changed the mart is rewritten from
    ``mart`` in one commit (a few thousand rows at most: two days of minutes). The state lives as long as the
    window: a new day (or a new process) loads it again. Memory grows with the orders of two days and the
    events of the orders touched since the load."""

    def __init__(self, spark, catalog: Catalog, start, known: int):
        self.spark = spark
        self.catalog = catalog
        self.start = start  # the window the state is for (apparel.gold.live_window_start)
        self.known = known
        # order id -> (minute in epoch micros, customer_id, units, revenue)
        self.orders: dict[int, tuple[int, int | None, int, Decimal]] = {}
        self.by_minute: dict[int, set[int]] = {}
        self.mart: dict[int, tuple] = {}  # minute in epoch micros -> (orders, units, revenue, customers)
        self.events: dict[int, dict[str, list[str]]] = {}

    @classmethod
    def load(cls, spark, catalog: Catalog, start, versions: dict[str, int], ahead: Pending | None) -> "LiveLane":
        """The state at ``versions`` of the events tables, ``ahead`` being the pending overlay there."""
        from pyspark.sql import functions as F

        lines = catalog.read(spark, "silver.fct_order_lines").where(
            F.col("order_month") >= F.lit(start.date().replace(day=1))).select(*LIVE_COLUMNS)
        if ahead is not None:
            lines = lines.join(F.broadcast(ahead.scope), "order_id", "left_anti").unionByName(ahead.lines)
        known = None
        for t in FACTS:
            events = spark.read.format("delta").option("versionAsOf", versions[t]).load(
                catalog.path(f"bronze.cdc_{t}"))
            top = events.agg(F.max(F.greatest("_key_before", "_key_after"))).collect()[0][0]
            known = top if known is None or (top is not None and top > known) else known
        lane = cls(spark, catalog, start, -1 if known is None else int(known))
        lane.mart = {m: row for m in lane._keep(lane._per_order(lines)) if (row := lane._minute(m)) is not None}
        return lane

    def _per_order(self, lines) -> dict[int, tuple[int, int | None, int, Decimal]]:
        """Each order's figures from its fact ``lines`` (:data:`LIVE_COLUMNS`) in the window."""
        from pyspark.sql import functions as F

        start = F.to_timestamp(F.lit(self.start.isoformat(sep=" ")))  # as dm_sales_live reads it
        rows = lines.where(F.col("order_date") >= start).groupBy("order_id").agg(
            F.unix_micros(F.date_trunc("minute", F.first("order_date"))).alias("m"),
            F.first("customer_id").alias("c"), F.sum("qty").alias("u"), F.sum("line_revenue").alias("r")).collect()
        return {r["order_id"]: (r["m"], r["c"], int(r["u"]), r["r"]) for r in rows}

    def _keep(self, judged: dict, ids=()) -> set[int]:
        """Replace the figures of ``ids`` (and of the orders in ``judged``) by ``judged``'s; the minutes
        touched."""
        touched = set()
        for order_id in set(ids) | set(judged):
            old = self.orders.pop(order_id, None)
            if old is not None:
                touched.add(old[0])
                self.by_minute[old[0]].discard(order_id)
                if not self.by_minute[old[0]]:
                    del self.by_minute[old[0]]
            if order_id in judged:
                self.orders[order_id] = judged[order_id]
                self.by_minute.setdefault(judged[order_id][0], set()).add(order_id)
                touched.add(judged[order_id][0])
        return touched

    def _minute(self, minute: int) -> tuple | None:
        """The mart's row of ``minute`` (None: no line)."""
        ids = self.by_minute.get(minute)
        if not ids:
            return None
        figures = [self.orders[o] for o in ids]
        revenue = sum((f[3] for f in figures), Decimal(0))
        return (len(ids), sum(f[2] for f in figures), int(revenue),  # int(): Spark's cast, toward zero
                len({f[1] for f in figures if f[1] is not None}))

    def apply(self, batch: dict, versions: dict[str, int], steps: Steps | None = None) -> dict:
        """Take a micro-batch's events (``batch``: table -> its parsed events, as landed at ``versions``) and
        rewrite ``gold.dm_sales_live`` if a minute changed; returns ``{"orders"`` (judged), ``"read"`` (orders
        whose history was read from the events tables), ``"minutes"`` (changed), ``"version"}`` (the mart's
        commit, None without one). ``steps``: where the time went (``live.events``, ``live.read``,
        ``live.judge``, ``live.write``)."""
        from pyspark.sql import functions as F

        steps = steps or Steps()

        def events_of(df):
            return [(r[0], r[1], r[2]) for r in df.select(
                "_key_before", "_key_after", F.to_json(F.struct(*EVENT_COLUMNS), JSON)).collect()]

        got = run_parallel({t: (lambda t=t: events_of(batch[t])) for t in batch}, 2)
        ids = {k for rows in got.values() for before, after, _ in rows for k in (before, after) if k is not None}
        missing = {k for k in ids if k not in self.events and k <= self.known}
        steps.lap("live.events")
        for t, rows in got.items():
            for before, after, text in rows:
                for k in {before, after} - {None}:
                    if k not in missing:
                        self.events.setdefault(k, {}).setdefault(t, []).append(text)
        if missing:  # their whole history, this batch's events included
            for t in FACTS:
                stored = self.spark.read.format("delta").option("versionAsOf", versions[t]).load(
                    self.catalog.path(f"bronze.cdc_{t}"))
                for before, after, text in events_of(events_for_keys(stored, sorted(missing), "order_id")):
                    for k in {before, after} - {None}:
                        if k in missing:
                            self.events.setdefault(k, {}).setdefault(t, []).append(text)
            steps.lap("live.read")
        done = {"orders": len(ids), "read": len(missing), "minutes": 0, "version": None}
        if not ids:
            return done

        def frame(t: str):
            texts = sorted({x for k in ids for x in self.events.get(k, {}).get(t, [])})
            return local_frame(self.spark, [(x,) for x in texts], "j STRING").select(
                F.from_json("j", event_type(SOURCES[t]), JSON).alias("e")).select("e.*")

        judged_now = {k: v for k, v in self._per_order(judged_lines(frame("orders"), frame("order_details")))
                      .items() if k in ids}
        changed = {}
        for m in self._keep(judged_now, ids):
            row = self._minute(m)
            if row != self.mart.get(m):
                changed[m] = row
        steps.lap("live.judge")
        if changed:
            for m, row in changed.items():
                if row is None:
                    del self.mart[m]
                else:
                    self.mart[m] = row
            done.update(minutes=len(changed), version=self._write())
            steps.lap("live.write")
        return done

    def _write(self) -> int:
        """``gold.dm_sales_live`` := ``mart``, in one commit; its version."""
        from pyspark.sql import functions as F

        from apparel.errors import AccountingError
        from apparel.jobs.gold import LIVE

        rows = [(m, *row) for m, row in sorted(self.mart.items())]
        df = local_frame(
            self.spark, rows, "m BIGINT, orders BIGINT, units BIGINT, revenue BIGINT, customers BIGINT").select(
            F.timestamp_micros("m").alias("minute"), "orders", "units", "revenue", "customers")
        commit = self.catalog.overwrite(df, LIVE)
        if commit["rows"] != len(rows):
            raise AccountingError(f"{LIVE}: the fast lane wrote {commit['rows']} row(s) of {len(rows)}")
        return commit["version"]
