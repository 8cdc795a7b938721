"""The silver runs' row accounting, read back from ``ops.dq_results`` (what the jobs print at the end and the
Airflow task logs show)."""

from __future__ import annotations

from apparel.catalog import Catalog


def accounting_lines(spark, catalog: Catalog, run_id: str | None = None) -> list[str]:
    """The row accounting of one silver run (default: the latest), read back from ``ops.dq_results``:
    rows read = written + quarantined + duplicates removed, per source table."""
    from pyspark.sql import functions as F

    if not catalog.exists(spark, "ops.dq_results"):
        return ["no silver run recorded in ops.dq_results yet"]
    results = catalog.read(spark, "ops.dq_results")
    if run_id is None:
        last = results.orderBy(F.col("run_at").desc()).select("run_id").first()
        run_id = last["run_id"] if last else None
    rows = results.where(F.col("run_id") == run_id).orderBy("table").collect() if run_id else []
    if not rows:
        return [f"no accounting rows for silver run {run_id} in ops.dq_results"]
    mode = rows[0]["mode"] if "mode" in results.columns and rows[0]["mode"] else "full"
    lines = [f"row accounting of silver run {run_id} ({mode}, run date {rows[0]['run_date']}), from ops.dq_results:",
             f"  {'table':<19} {'read':>8} = {'written':>8} + {'quarantined':>11} + {'duplicates':>10}  balanced"]
    for r in rows:
        ok = r["rows_read"] == r["rows_written"] + r["rows_quarantined"] + r["duplicates_removed"]
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((r["quarantined_by_reason"] or {}).items()))
        lines.append(f"  {r['table']:<19} {r['rows_read']:>8,} = {r['rows_written']:>8,} + "
                     f"{r['rows_quarantined']:>11,} + {r['duplicates_removed']:>10,}  {'yes' if ok else 'NO'}"
                     + (f"  ({reasons})" if reasons else ""))
    return lines
