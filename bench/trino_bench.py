"""Latency of dashboard queries through Trino, one representative query per gold table.

What it does: starts the object store and Trino with the project's script (as the tests do), runs
``apparel run --dataset DIR`` into an ``s3a://`` lakehouse in a fresh bucket (tables registered in Trino by
the run itself), then runs each query ``--warmup`` times unmeasured and ``--repeat`` times measured, one
after another, and prints p50 and p95 wall-clock latency (client side: submit, poll, fetch every row) per
query. The bucket and its Trino registrations are removed at the end unless ``--keep``, and so is the
temporary store database. It leaves the services as it found them: ``scripts/services.sh status`` is asked
first (each of the object store, Trino and Superset), and whatever the bench started is stopped at the end,
even when the run fails or is interrupted; what was already running keeps running. Figures are printed (and
optionally written as CSV), never asserted.

Run from the repo root::

    .venv/bin/python bench/trino_bench.py [--dataset DIR] [--repeat 30] [--warmup 3] [--csv OUT.csv] [--keep]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from apparel.config import PROJECT_ROOT, load_settings

DEFAULT_DATASET = PROJECT_ROOT.parent / "shared/datasets/django_apparel"
SCRIPTS = PROJECT_ROOT / "scripts"
# what `scripts/services.sh up` starts, in its order (Superset only when its secrets are set)
SERVICES = ["objectstore", "trino", "superset"]

# what a dashboard asks of each mart
QUERIES = {
    "dm_sales_monthly": "SELECT month, revenue, orders, avg_order_value FROM gold.dm_sales_monthly ORDER BY month",
    "dm_product_monthly": "SELECT product_id, sum(revenue) AS revenue FROM gold.dm_product_monthly "
                          "WHERE month >= DATE '2022-07-01' GROUP BY product_id ORDER BY revenue DESC LIMIT 10",
    "dm_product_ranking": "SELECT * FROM gold.dm_product_ranking ORDER BY revenue DESC LIMIT 20",
    "dm_region_monthly": "SELECT province_name, sum(revenue) AS revenue, sum(orders) AS orders "
                         "FROM gold.dm_region_monthly GROUP BY province_name ORDER BY revenue DESC",
    "dm_category_gender_monthly": "SELECT category_name, gender, sum(revenue) AS revenue "
                                  "FROM gold.dm_category_gender_monthly GROUP BY 1, 2 ORDER BY 1, 2",
    "dm_customer_rfm": "SELECT rfm_segment, count(*) AS customers FROM gold.dm_customer_rfm GROUP BY 1 ORDER BY 2 DESC",
    "dm_customer_cohorts": "SELECT * FROM gold.dm_customer_cohorts ORDER BY cohort_month, 2",
    "dm_basket_pairs": "SELECT style_a, style_b, orders_together FROM gold.dm_basket_pairs "
                       "ORDER BY orders_together DESC LIMIT 10",
}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def running_services() -> set[str]:
    """The services that run now, each asked as `scripts/services.sh status` asks it."""
    return {name for name in SERVICES
            if subprocess.run(["bash", str(SCRIPTS / f"{name}.sh"), "status"], capture_output=True,
                              check=False).returncode == 0}


def stop_services(names: set[str]) -> None:
    """Stop ``names`` in the reverse of the start order; report, never raise (this runs in ``finally``)."""
    for name in reversed(SERVICES):
        if name in names:
            proc = subprocess.run(["bash", str(SCRIPTS / f"{name}.sh"), "stop"], capture_output=True, text=True,
                                  check=False)
            status = ("stopped" if proc.returncode == 0
                      else f"stop failed (exit {proc.returncode}): {proc.stderr.strip()}")
            print(f"[bench] {name} {status} (the bench started it)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET))
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--csv", help="also write the figures to this CSV file")
    parser.add_argument("--keep", action="store_true", help="keep the bucket and the Trino registrations")
    args = parser.parse_args(argv)

    before = running_services()
    print(f"[bench] services running before: {', '.join(sorted(before)) or 'none'}", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="apparel-trino-bench-"))
    started_services: set[str] = set()
    try:
        up = subprocess.run(["bash", str(SCRIPTS / "services.sh"), "up"], check=False)
        started_services = running_services() - before
        if up.returncode != 0:
            print(f"error: scripts/services.sh up failed (exit {up.returncode})", file=sys.stderr)
            return 1
        return bench(args, tmp)
    finally:
        stop_services(started_services | (running_services() - before))
        shutil.rmtree(tmp, ignore_errors=True)


def bench(args: argparse.Namespace, tmp: Path) -> int:
    bucket = f"apparel-bench-{uuid.uuid4().hex[:8]}"
    os.environ.update({"APPAREL_LAKEHOUSE": f"s3a://{bucket}/lakehouse", "APPAREL_LANDING": f"s3a://{bucket}/landing",
                       "APPAREL_STORE_DB": f"sqlite:///{tmp / 'store.db'}", "APPAREL_REPORTS": str(tmp / "reports")})
    settings = load_settings()

    from apparel import cli
    from apparel.objectstore import client, remove_prefix
    from apparel.trino_catalog import connect, execute, unregister_under

    started = time.perf_counter()
    try:
        if cli.main(["run", "--dataset", args.dataset]) != 0:
            return 1
        print(f"\npipeline into s3a://{bucket}/ in {time.perf_counter() - started:.0f}s; "
              f"{args.warmup} warm-up + {args.repeat} measured runs per query\n")
        conn = connect(settings)
        results = []
        for table, sql in QUERIES.items():
            times = []
            for i in range(args.warmup + args.repeat):
                t0 = time.perf_counter()
                _, rows = execute(settings, sql, conn)
                if i >= args.warmup:
                    times.append((time.perf_counter() - t0) * 1000)
            results.append({"table": f"gold.{table}", "rows": len(rows), "p50_ms": round(percentile(times, 50), 1),
                            "p95_ms": round(percentile(times, 95), 1), "mean_ms": round(statistics.mean(times), 1)})
        print(f"{'table':<34} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
        for r in results:
            print(f"{r['table']:<34} {r['rows']:>5} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['mean_ms']:>8.1f}")
        if args.csv:
            with open(args.csv, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(results[0]))
                writer.writeheader()
                writer.writerows(results)
    finally:
        if not args.keep:
            try:
                unregister_under(settings, f"s3a://{bucket}/")
                remove_prefix(settings, f"s3a://{bucket}/")
                if client(settings).bucket_exists(bucket):
                    client(settings).remove_bucket(bucket)
            except Exception as exc:  # noqa: BLE001 - report and go on stopping what the bench started
                print(f"[bench] could not remove s3a://{bucket}/: {type(exc).__name__}: {exc}", file=sys.stderr)
        _stop_spark()
    return 0


def _stop_spark() -> None:
    """`apparel run` ran in this process: stop its Spark session (and JVM) before the services go."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


if __name__ == "__main__":
    sys.exit(main())
