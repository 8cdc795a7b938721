"""The run's summary (printed) and HTML report (written to ``APPAREL_REPORTS``, default ``var/reports``; the
path is printed).

The report holds bar charts of monthly revenue, top products, revenue by province and RFM segments, the
data-quality table of the run, and the latest bronze ingest of each table from ``ops.ingest_runs``, with a
warning for each incremental table whose source and bronze disagree on the rows at or below the mark. Charts
are inline SVG, so the file opens anywhere without network access.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from pathlib import Path

from apparel.catalog import Catalog
from apparel.config import Settings
from apparel.jobs.bronze import reconciliation_warning


def _rupiah(n: float) -> str:
    return f"Rp {n:,.0f}"


def bar_chart(title: str, labels: list[str], values: list[float], fmt=_rupiah, width: int = 760) -> str:
    """A horizontal bar chart as inline SVG."""
    bar_h, gap, label_w = 18, 6, 200
    height = len(values) * (bar_h + gap) + 30
    top = max(values) if values and max(values) > 0 else 1
    rows = []
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 24 + i * (bar_h + gap)
        w = max(1.0, (width - label_w - 170) * value / top)
        rows.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{html.escape(str(label))}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#3b6ea8"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 13}">{html.escape(fmt(value))}</text>')
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg width="{width}" height="{height}" font-family="sans-serif" font-size="12">{"".join(rows)}</svg>'
            f'</figure>')


def gather(spark, settings: Settings, dq_run_id: str | None) -> dict:
    """The figures the summary and the report show, read from gold and ops."""
    from pyspark.sql import functions as F

    cat = Catalog(settings)
    monthly = cat.read(spark, "gold.dm_sales_monthly").orderBy("month").toPandas()
    ranking = cat.read(spark, "gold.dm_product_ranking").orderBy("revenue_rank").limit(10).toPandas()
    provinces = (cat.read(spark, "gold.dm_region_monthly").groupBy("province_name")
                 .agg(F.sum("revenue").alias("revenue")).orderBy(F.desc("revenue")).toPandas())
    segments = (cat.read(spark, "gold.dm_customer_rfm").groupBy("rfm_segment")
                .agg(F.count(F.lit(1)).alias("customers"), F.sum("revenue").alias("revenue"))
                .orderBy(F.desc("revenue")).toPandas())
    dq = None
    if dq_run_id and cat.exists(spark, "ops.dq_results"):
        dq = cat.read(spark, "ops.dq_results").where(F.col("run_id") == dq_run_id).orderBy("table").toPandas()
    return {"monthly": monthly, "ranking": ranking, "provinces": provinces, "segments": segments, "dq": dq,
            "ingest": latest_ingest(spark, settings)}


INGEST_COLUMNS = ["table", "batch_id", "mode", "rows_written", "watermark_after", "late_rows",
                  "source_rows_below_mark", "bronze_rows_below_mark"]


def latest_ingest(spark, settings: Settings):
    """The latest ``ops.ingest_runs`` row of each bronze table (pandas), or None before the first ingest. Rows
    written before the reconciliation columns existed read NULL there."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cat = Catalog(settings)
    if not cat.exists(spark, "ops.ingest_runs"):
        return None
    runs = cat.read(spark, "ops.ingest_runs")
    runs = runs.select(*[F.col(c) if c in runs.columns else F.lit(None).cast("bigint").alias(c)
                         for c in INGEST_COLUMNS + ["ingested_at"]])
    latest = Window.partitionBy("table").orderBy(F.desc("ingested_at"), F.desc("batch_id"))
    return (runs.withColumn("_n", F.row_number().over(latest)).where("_n = 1").select(*INGEST_COLUMNS)
            .orderBy("table").toPandas())


def _count(value) -> int | None:
    """A count from a pandas cell (nullable integers arrive as float NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def ingest_warnings(ingest) -> list[str]:
    """Reconciliation warnings of the latest ingest of each incremental table."""
    if ingest is None:
        return []
    out = []
    for _, r in ingest.iterrows():
        w = reconciliation_warning(r["table"], _count(r["source_rows_below_mark"]),
                                   _count(r["bronze_rows_below_mark"]), r["watermark_after"])
        if w:
            out.append(w)
    return out


def _ingest_table(ingest) -> str:
    if ingest is None or ingest.empty:
        return "<p>No bronze ingest yet.</p>"
    warnings = "".join(f"<p class='warning'>warning: {html.escape(w)}</p>" for w in ingest_warnings(ingest))
    head = ("<tr><th>table</th><th>batch</th><th>mode</th><th>rows written</th><th>watermark</th>"
            "<th>late rows</th><th>source rows at or below the mark</th><th>bronze rows at or below it</th></tr>")

    def n(value) -> str:
        c = _count(value)
        return "-" if c is None else f"{c:,}"

    body = [f"<tr><td>{html.escape(r['table'])}</td><td>{html.escape(str(r['batch_id']))}</td>"
            f"<td>{html.escape(str(r['mode']))}</td><td>{n(r['rows_written'])}</td>"
            f"<td>{html.escape(str(r['watermark_after'] or '-'))}</td><td>{n(r['late_rows'])}</td>"
            f"<td>{n(r['source_rows_below_mark'])}</td><td>{n(r['bronze_rows_below_mark'])}</td></tr>"
            for _, r in ingest.iterrows()]
    return f"{warnings}<table>{head}{''.join(body)}</table>"


def highlights(data: dict) -> list[str]:
    m, r, p = data["monthly"], data["ranking"], data["provinces"]
    if m.empty:
        return ["no sales in the facts"]
    best = m.loc[m["revenue"].idxmax()]
    out = [f"revenue {_rupiah(m['revenue'].sum())} from {int(m['orders'].sum()):,} orders over {len(m)} month(s)",
           f"best month {best['month']:%Y-%m} ({_rupiah(best['revenue'])})"]
    if not r.empty:
        out.append(f"top product #{int(r.iloc[0]['product_id'])} {r.iloc[0]['product_name']} {r.iloc[0]['size']} "
                   f"({r.iloc[0]['revenue_share_pct']:.1f}% of revenue)")
    if not p.empty:
        out.append(f"top province {p.iloc[0]['province_name']} ({_rupiah(p.iloc[0]['revenue'])})")
    return out


def _dq_table(dq) -> str:
    if dq is None or dq.empty:
        return "<p>No silver run in this report.</p>"
    head = ("<tr><th>table</th><th>read</th><th>written</th><th>quarantined</th><th>duplicates removed</th>"
            "<th>quarantine reasons</th><th>warnings</th></tr>")
    body = []
    for _, r in dq.iterrows():
        reasons = ", ".join(f"{k}: {v}" for k, v in dict(r["quarantined_by_reason"] or {}).items()) or "-"
        warns = ", ".join(f"{k}: {v}" for k, v in dict(r["warnings"] or {}).items()) or "-"
        body.append(f"<tr><td>{html.escape(r['table'])}</td><td>{r['rows_read']:,}</td><td>{r['rows_written']:,}</td>"
                    f"<td>{r['rows_quarantined']:,}</td><td>{r['duplicates_removed']:,}</td>"
                    f"<td>{html.escape(reasons)}</td><td>{html.escape(warns)}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def write_report(data: dict, path: Path, title: str) -> Path:
    m, r, p, s = data["monthly"], data["ranking"], data["provinces"], data["segments"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#eef}"
        "figcaption{font-weight:bold;margin:1em 0 .3em}.warning{color:#a40000;font-weight:bold}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<ul>" + "".join(f"<li>{html.escape(h)}</li>" for h in highlights(data)) + "</ul>",
        bar_chart("Monthly revenue", [f"{d:%Y-%m}" for d in m["month"]], m["revenue"].tolist()),
        bar_chart("Top products by revenue",
                  [f"#{i} {n} {z}" for i, n, z in zip(r["product_id"], r["product_name"], r["size"])],
                  r["revenue"].tolist()),
        bar_chart("Revenue by province", p["province_name"].tolist(), p["revenue"].tolist()),
        bar_chart("RFM segments: revenue", [f"{a} ({c} customers)" for a, c in zip(s["rfm_segment"], s["customers"])],
                  s["revenue"].tolist()),
        "<h2>Data quality</h2>", _dq_table(data["dq"]),
        "<h2>Bronze ingest</h2>", _ingest_table(data.get("ingest")),
        "</body></html>",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path


def report_path(settings: Settings, run_id: str) -> Path:
    return Path(settings.reports) / f"run-{run_id}.html"


def make_report(spark, settings: Settings, run_id: str, dq_run_id: str | None) -> tuple[Path, list[str]]:
    data = gather(spark, settings, dq_run_id)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    path = write_report(data, report_path(settings, run_id), f"Django Apparel run {run_id} ({stamp})")
    return path, highlights(data)
