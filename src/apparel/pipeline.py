"""The main job: bronze -> silver -> gold in one Spark application, and the table status report."""

from __future__ import annotations

from datetime import date
from typing import Callable

from apparel.catalog import TABLES, Catalog, run_parallel
from apparel.config import Settings
from apparel.errors import ConfigError

LAYER_ORDER = ("bronze", "silver", "gold")


def _run_bronze(spark, settings: Settings, log, run_date, full_refresh=False, accept_shrink=()) -> dict:
    from apparel.jobs.bronze import BronzeIngest, bronze_warnings

    ingest = BronzeIngest(spark, settings, log=log, accept_shrink=accept_shrink)
    results = ingest.run()
    return {"bronze": {r.table: r.rows_written for r in results},
            "bronze_warnings": ingest.warnings + bronze_warnings(results)}


def _run_silver(spark, settings: Settings, log, run_date, full_refresh=False, accept_shrink=()) -> dict:
    from apparel.jobs.silver import SilverBuild

    result = SilverBuild(spark, settings, run_date=run_date, log=log, full_refresh=full_refresh).run()
    return {"silver": result.written, "contract": result.tables, "silver_mode": result.mode,
            "silver_run_id": result.run_id if result.mode != "unchanged" else None}


def _run_gold(spark, settings: Settings, log, run_date, full_refresh=False, accept_shrink=()) -> dict:
    from apparel.jobs.gold import GoldBuild

    return {"gold": GoldBuild(spark, settings, log=log, full_refresh=full_refresh).run()}


RUNNERS: dict[str, Callable] = {"bronze": _run_bronze, "silver": _run_silver, "gold": _run_gold}


def parse_layers(text: str | None) -> list[str]:
    if not text:
        return list(LAYER_ORDER)
    wanted = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [w for w in wanted if w not in RUNNERS]
    if unknown:
        raise ConfigError(f"unknown layer(s) {', '.join(unknown)}; choose from {', '.join(LAYER_ORDER)}")
    return [layer for layer in LAYER_ORDER if layer in wanted]


def run_layers(spark, settings: Settings, layers: list[str], log=print, run_date: date | None = None,
               full_refresh: bool = False, between: Callable[[], None] | None = None,
               accept_shrink: list[str] | tuple = ()) -> dict:
    """Run ``layers`` in order in one Spark session; returns rows written per layer and the contract results.
    ``full_refresh`` rebuilds silver and gold from all of bronze instead of catching up incrementally;
    ``between()`` runs before each layer (a run that lost its lock stops there); ``accept_shrink``: master
    snapshots bronze lands even when they lack more keys than ``bronze.snapshot_max_loss_percent``."""
    summary: dict = {}
    for layer in layers:
        if between is not None:
            between()
        summary.update(RUNNERS[layer](spark, settings, log, run_date, full_refresh, accept_shrink))
    return summary


def summary_lines(summary: dict, layers: list[str]) -> list[str]:
    """Rows per layer, then quarantine and warnings of the contract."""
    lines = [f"{layer:<7} {sum(summary[layer].values()):>10,} rows written in {len(summary[layer])} tables"
             + (f" ({summary['silver_mode']})" if layer == "silver" and summary.get("silver_mode") else "")
             for layer in layers if layer in summary]
    tables = summary.get("contract") or {}
    if tables:
        quarantined = {t: r.quarantined for t, r in tables.items() if r.rows_quarantined}
        warnings = {t: r.warnings for t, r in tables.items() if r.warnings}
        lines.append(f"quarantine {sum(r.rows_quarantined for r in tables.values()):,} rows"
                     + (": " + "; ".join(f"{t} {q}" for t, q in quarantined.items()) if quarantined else ""))
        lines.append(f"duplicates removed {sum(r.duplicates_removed for r in tables.values()):,}")
        lines.append("warnings " + ("; ".join(f"{t} {w}" for t, w in warnings.items()) if warnings else "none"))
    lines += [f"warning: {w}" for w in summary.get("bronze_warnings", [])]
    return lines


def table_status(spark, settings: Settings) -> list[dict]:
    """Row count, Delta version and last batch of every catalogued table that exists, in name order; several
    tables at a time (``spark.write_threads``), since each is a few small Spark jobs of driver-side latency."""
    from pyspark.sql import functions as F

    catalog = Catalog(settings)

    def status(name: str) -> dict:
        if not catalog.exists(spark, name):
            return {"table": name, "rows": None, "version": None, "last_batch": None, "updated": None}
        df = catalog.read(spark, name)
        last = catalog.last_commit(spark, name)
        batch_col = "_batch_id" if "_batch_id" in df.columns else ("batch_id" if "batch_id" in df.columns else None)
        agg = df.agg(F.count(F.lit(1)).alias("n"), *( [F.max(batch_col).alias("b")] if batch_col else []))
        row = agg.collect()[0]
        return {"table": name, "rows": int(row["n"]), "version": last["version"],
                "last_batch": row["b"] if batch_col else None,
                "updated": last["timestamp"].strftime("%Y-%m-%d %H:%M:%S")}

    threads = int(settings.spark.get("write_threads", 4))
    return list(run_parallel({name: (lambda n=name: status(n)) for name in sorted(TABLES)}, threads).values())
