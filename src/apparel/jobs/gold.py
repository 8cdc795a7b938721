"""Gold build: the datamarts at ``<lakehouse>/gold/<table>``, from the silver facts and dimensions only.

Inputs: ``silver.fct_order_lines``, the dimensions ``dim_product``, ``dim_customer``, ``dim_location`` and
``dim_province``, and ``ops.silver_runs`` (what each silver run changed). Outputs: the eight ``dm_*`` tables of
:data:`MARTS` and the live mart ``dm_sales_live`` (grains in :mod:`apparel.gold`), and one row per gold run that
changed gold in ``ops.gold_runs``.

**Incremental.** Gold catches up with the silver runs after the one it last consumed:

- none: nothing is written;
- a monthly mart (``dm_sales_monthly``, ``dm_product_monthly``, ``dm_region_monthly``,
  ``dm_category_gender_monthly``) is recomputed for the order months whose fact lines changed, and replaces
  those months only (``replaceWhere``, one commit; ``dm_sales_monthly`` also the following month, whose
  month-over-month change depends on it). When a dimension whose labels it shows changed, the whole mart;
- a mart defined over all of history (ranking, RFM, cohorts, basket) is rewritten when its inputs changed.

A full silver run, a missing mart, or ``full_refresh`` rewrites every mart.

**The live mart.** Whenever gold has work to do (or ``dm_sales_live`` does not exist yet), :func:`refresh_live`
recomputes its window (the current and the previous day of ``stream.live_now``) and merges it in: minutes that
left the window are deleted, unchanged minutes are not rewritten. With change data capture on, the orders whose
change events silver has not applied yet count as the contract judges them now (:mod:`apparel.jobs.live`), as in
the stream, which calls :func:`refresh_live` after every micro-batch (for the minutes it touched) and after each
of its silver runs (the whole window).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timezone

from apparel.accounting import accounting_lines
from apparel.catalog import Catalog, run_parallel
from apparel.config import Settings
from apparel.errors import SourceError
from apparel.gold import build_marts, dm_sales_live, live_window_start
from apparel.jobs.live import FACTS, consumed_versions, pending
from apparel.locks import lakehouse_lock
from apparel.runtime import new_batch_id, run_job
from apparel.spark import local_frame, pin

INPUTS = ["silver.fct_order_lines", "silver.dim_product", "silver.dim_customer", "silver.dim_location",
          "silver.dim_province"]
MARTS = ["dm_sales_monthly", "dm_product_monthly", "dm_product_ranking", "dm_region_monthly",
         "dm_category_gender_monthly", "dm_customer_rfm", "dm_customer_cohorts", "dm_basket_pairs"]
# what each mart reads besides the fact lines; a change in one of these rewrites the mart whole
LABELS = {
    "dm_sales_monthly": set(),
    "dm_product_monthly": {"silver.dim_product"},
    "dm_product_ranking": {"silver.dim_product"},
    "dm_region_monthly": {"silver.dim_location", "silver.dim_province"},
    "dm_category_gender_monthly": {"silver.dim_product", "silver.dim_customer"},
    "dm_customer_rfm": {"silver.dim_customer"},
    "dm_customer_cohorts": set(),
    "dm_basket_pairs": {"silver.dim_product"},
}
LIVE = "gold.dm_sales_live"
MONTHLY = {"dm_sales_monthly", "dm_product_monthly", "dm_region_monthly", "dm_category_gender_monthly"}
RUNS_SCHEMA = "run_id STRING, run_at TIMESTAMP, silver_seq BIGINT, mode STRING, tables ARRAY<STRING>"


def _add_months(d: date, n: int) -> date:
    m = d.year * 12 + d.month - 1 + n
    return date(m // 12, m % 12 + 1, 1)


def plan(silver_runs: list[dict], full: bool) -> dict[str, object]:
    """What each mart needs after ``silver_runs`` (rows of ``ops.silver_runs`` not consumed yet): ``"full"``,
    a sorted list of months to replace, or nothing (absent)."""
    if full or any(r["mode"] == "full" for r in silver_runs):
        return {m: "full" for m in MARTS}
    changed = {t for r in silver_runs for t in r["changed_tables"] or []}
    months = sorted({m for r in silver_runs for m in r["touched_months"] or []})
    facts = "silver.fct_order_lines" in changed and bool(months)
    out: dict[str, object] = {}
    for mart in MARTS:
        if LABELS[mart] & changed:
            out[mart] = "full"
        elif facts:
            if mart not in MONTHLY:
                out[mart] = "full"
            elif mart == "dm_sales_monthly":  # the next month's month-over-month change moves too
                out[mart] = sorted(set(months) | {_add_months(m, 1) for m in months})
            else:
                out[mart] = months
    return out


def refresh_live(spark, catalog: Catalog, now: datetime, pending=None, touched_only: bool = False) -> dict:
    """Recompute ``gold.dm_sales_live`` for the window of ``now`` from ``silver.fct_order_lines`` (reading only
    the ``order_month`` partitions from the window's start on) and apply it: one MERGE of what differs from the
    table's rows (minutes that left the window deleted; nothing different, no commit), or, on first use, the
    table created with the window's rows. Returns ``{"upserts", "deletes", "version", "metrics"}``.

    ``pending`` (:class:`apparel.jobs.live.Pending`): the orders whose change events silver has not applied yet
    replace theirs in the fact lines. ``touched_only``: only the minutes those orders' lines fall in, stored or
    pending, are recomputed (the stream's fast lane; minutes that left the window wait for a whole refresh)."""
    from pyspark.sql import functions as F

    from apparel.jobs.live import LIVE_COLUMNS

    start = live_window_start(now)
    lines = catalog.read(spark, "silver.fct_order_lines").where(
        F.col("order_month") >= F.lit(start.date().replace(day=1)))
    if pending is not None:
        lines = lines.select(*LIVE_COLUMNS)
        stored = lines.join(F.broadcast(pending.scope), "order_id", "left_semi")
        lines = lines.join(F.broadcast(pending.scope), "order_id", "left_anti").unionByName(pending.lines)
    # a stored schema that differs from the declaration is replaced by a whole overwrite (a migration)
    migrate = bool(catalog.stored_differs(spark, LIVE))
    if pending is not None and touched_only and catalog.exists(spark, LIVE) and not migrate:
        minute = F.date_trunc("minute", "order_date")
        # the touched minutes as text, read back in the session time zone (no Python time zone in between)
        text = F.date_format(minute, "yyyy-MM-dd HH:mm:ss").alias("m")
        touched = [F.to_timestamp(F.lit(r[0])) for r in stored.select(text).unionByName(
            pending.lines.select(text)).distinct().collect() if r[0] is not None]
        if not touched:
            return {"upserts": 0, "deletes": 0, "version": None, "metrics": {}}
        new = dm_sales_live(lines.where(minute.isin(*touched)), start)
        old = catalog.read(spark, LIVE).where(F.col("minute").isin(*touched))
        return catalog.merge_changes(LIVE, new, old, key=["minute"], stored_checked=True)
    new = dm_sales_live(lines, start)
    if migrate or not catalog.exists(spark, LIVE):
        commit = catalog.overwrite(new, LIVE)
        return {"upserts": commit["rows"], "deletes": 0, "version": commit["version"], "metrics": commit["metrics"]}
    return catalog.merge_changes(LIVE, new, catalog.read(spark, LIVE), key=["minute"], stored_checked=True)


class GoldBuild:
    def __init__(self, spark, settings: Settings, log=print, full_refresh: bool = False):
        self.spark = spark
        self.settings = settings
        self.catalog = Catalog(settings, log=log)
        self.threads = int(settings.spark.get("write_threads", 4))
        self.log = log
        self.full_refresh = full_refresh

    def _pending(self) -> tuple[list[dict], int | None, bool]:
        """Silver runs gold has not consumed yet, the newest silver seq, and whether gold must start over."""
        from pyspark.sql import functions as F

        last = None
        if self.catalog.exists(self.spark, "ops.gold_runs"):
            last = self.catalog.read(self.spark, "ops.gold_runs").agg(F.max("silver_seq")).collect()[0][0]
        if not self.catalog.exists(self.spark, "ops.silver_runs"):
            return [], None, True
        runs = self.catalog.read(self.spark, "ops.silver_runs")
        pending = [r.asDict() for r in runs.where(F.col("seq") > (last if last is not None else -1)).collect()]
        newest = max([r["seq"] for r in pending], default=last)
        missing = not all(self.catalog.exists(self.spark, f"gold.{m}") for m in MARTS)
        return pending, newest, last is None or missing

    def run(self) -> dict[str, int]:
        with lakehouse_lock(self.settings, self.log, "gold"):
            return self._run()

    def _run(self) -> dict[str, int]:
        missing = [n for n in INPUTS if not self.catalog.exists(self.spark, n)]
        if missing:
            raise SourceError(f"{', '.join(missing)} not built yet: run the silver layer first")
        pending, newest, start_over = self._pending()
        todo = plan(pending, self.full_refresh or start_over)
        if not todo:
            if self.catalog.exists(self.spark, LIVE):
                self.log("[gold] no silver change since the last gold run; nothing written")
                return {}
            self.log(f"[gold] no silver change since the last gold run; creating {LIVE}")
            written = self._refresh_live({})
            self._record(newest, "incremental", sorted(written))
            return written
        full = sorted(m for m, v in todo.items() if v == "full")
        partial = {m: v for m, v in todo.items() if v != "full"}
        self.log(f"[gold] rewriting {', '.join(full) or 'no mart'}"
                 + (f"; replacing {len(next(iter(partial.values())))} month(s) of {', '.join(partial)}"
                    if partial else ""))
        lines, *dims = (self.catalog.read(self.spark, n) for n in INPUTS)
        tasks = {}
        if full:
            all_lines = lines.transform(pin) if len(full) > 1 else lines
            marts = build_marts(all_lines, *dims)
            for m in full:
                tasks[f"gold.{m}"] = (lambda m=m: self.catalog.overwrite(marts[m], f"gold.{m}"))
        for m, months in partial.items():
            tasks[f"gold.{m}"] = (lambda m=m, months=months: self._replace_months(m, months, lines, dims))
        commits = run_parallel(tasks, self.threads)
        written = {name: c["rows"] for name, c in commits.items()}
        for name, n in written.items():
            self.log(f"  {name:<33} {n:>7,} rows {'(replaced months)' if name[5:] in partial else ''}".rstrip())
        written = self._refresh_live(written)
        self._record(newest, "full" if not partial else "incremental", sorted(written))
        return written

    def _refresh_live(self, written: dict[str, int]) -> dict[str, int]:
        """:func:`refresh_live` at ``stream.live_now``; adds the rows it upserted and deleted to ``written`` when
        it committed."""
        now = self.settings.live_now
        with lakehouse_lock(self.settings, self.log, "gold", part="live"):
            # with change data capture on, the events silver has not applied yet count too (as in the stream)
            ahead = None
            if self.settings.cdc.enabled and all(self.catalog.exists(self.spark, f"bronze.cdc_{t}") for t in FACTS):
                ahead = pending(self.spark, self.catalog, consumed_versions(self.spark, self.catalog))
            live = refresh_live(self.spark, self.catalog, now, ahead)
        if live["version"] is None:
            self.log(f"  {LIVE:<33} unchanged (window from {live_window_start(now)})")
            return written
        written = {**written, LIVE: live["upserts"] + live["deletes"]}
        self.log(f"  {LIVE:<33} {written[LIVE]:>7,} rows (window from {live_window_start(now)}: "
                 f"{live['upserts']:,} upserted, {live['deletes']:,} deleted)")
        return written

    def _replace_months(self, mart: str, months: list[date], lines, dims: list) -> dict:
        """Recompute ``mart`` for ``months`` from the fact lines of those months (and, for the month-over-month
        change, the month before each) and replace exactly those months in one commit."""
        from pyspark.sql import functions as F

        needed = set(months) | ({_add_months(m, -1) for m in months} if mart == "dm_sales_monthly" else set())
        subset = lines.where(F.col("order_month").isin(sorted(needed)))
        df = build_marts(subset, *dims, only=[mart])[mart]
        df = df.where(F.col("month").isin(months))
        where = "month IN (" + ", ".join(f"DATE'{m.isoformat()}'" for m in months) + ")"
        return self.catalog.replace_where(df, f"gold.{mart}", where)

    def _record(self, silver_seq: int | None, mode: str, tables: list[str]) -> None:
        now = datetime.now(timezone.utc)
        row = [(new_batch_id(now), now.replace(tzinfo=None), silver_seq, mode, tables)]
        self.catalog.append(local_frame(self.spark, row, RUNS_SCHEMA), "ops.gold_runs")


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``gold_build.py [--run-date YYYY-MM-DD] [--full-refresh] [--env ENV]``."""
    parser = argparse.ArgumentParser(prog="gold_build", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None)
    parser.add_argument("--run-date", default=None,
                        help="logical date; accepted like every job's, the marts cover all history")
    parser.add_argument("--full-refresh", action="store_true", help="rewrite every mart from silver")
    args = parser.parse_args(argv)

    def body(spark, settings):
        GoldBuild(spark, settings, full_refresh=args.full_refresh).run()
        print("the marts are built on the latest silver run:")
        for line in accounting_lines(spark, Catalog(settings)):
            print(line)

    return run_job(body, env=args.env, app_name="apparel-gold")


if __name__ == "__main__":
    sys.exit(main())
