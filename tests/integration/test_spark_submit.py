"""The spark_jobs/ entry points under a real spark-submit, as the README shows them: bronze (both source groups
in one job: Airflow's test submits each group on its own), silver, gold, on a small generated sample."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from apparel.catalog import Catalog
from apparel.config import PROJECT_ROOT
from apparel.generator import generate
from apparel.seed import seed_dataset
from conftest import settings_in

BIN = Path(sys.executable).parent


def submit(env, job, *args):
    jars = subprocess.run([str(BIN / "apparel"), "jars"], env=env, capture_output=True, text=True, check=True)
    java_options = f"-Duser.timezone=UTC -Dlog4j2.configurationFile=file:{PROJECT_ROOT}/conf/log4j2.properties"
    cmd = [str(BIN / "spark-submit"), "--master", "local[2]", "--jars", ",".join(jars.stdout.split()),
           "--driver-java-options", java_options,
           str(PROJECT_ROOT / "spark_jobs" / job), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)


def test_entry_points_under_spark_submit(tmp_path):
    sample = tmp_path / "sample"
    generate(sample, scale=0.05, seed=5)
    settings = settings_in(tmp_path)
    seed_dataset(settings, sample, log=lambda m: None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPAREL_")}
    env.update({"APPAREL_ENV": "ci", "APPAREL_LAKEHOUSE": settings.lakehouse, "APPAREL_LANDING": settings.landing,
                "APPAREL_STORE_DB": settings.store_db, "PATH": f"{BIN}:{env['PATH']}",
                "PYSPARK_PYTHON": sys.executable})

    for job, args in [("bronze_ingest.py", []), ("silver_build.py", ["--run-date", "2026-01-01"]),
                      ("gold_build.py", [])]:
        proc = submit(env, job, *args)
        assert proc.returncode == 0, f"{job} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"

    from apparel.spark import get_spark

    spark = get_spark(settings)
    lines = pd.read_csv(sample / "order_details.csv")
    fct = Catalog(settings).read(spark, "silver.fct_order_lines")
    assert fct.count() == len(lines)
    gold = Catalog(settings).read(spark, "gold.dm_sales_monthly").agg({"revenue": "sum"}).collect()[0][0]
    assert gold == int((lines.qty * lines.item_price).sum())

    # a failing job exits non-zero with a one-line reason in its log (spark-submit passes the Python driver's
    # stderr through its stdout)
    env_bad = dict(env, APPAREL_LAKEHOUSE=str(tmp_path / "empty-lake"))
    bad = submit(env_bad, "gold_build.py")
    assert bad.returncode != 0
    assert "error: silver.fct_order_lines, silver.dim_product, silver.dim_customer, silver.dim_location not built " \
           "yet: run the silver layer first" in (bad.stdout + bad.stderr).splitlines()
