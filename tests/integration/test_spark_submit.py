"""The spark_jobs/ entry points under a real spark-submit, as the README shows them (the class path from `apparel
jars`), on the small generated sample: bronze with both source groups in one job. Airflow's test submits each bronze
group on its own, silver_build.py, gold_build.py and maintain.py through the same spark-submit, and a failing job
(its exit code, and its one-line reason in the task log), so they are not submitted again here (test_maintain.py
checks what maintenance does to every table)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import expected_model as em
from apparel.catalog import Catalog
from apparel.config import PROJECT_ROOT
from apparel.seed import seed_dataset
from conftest import in_parallel, settings_in

BIN = Path(sys.executable).parent


def submit(env, class_path: str, job, *args):
    java_options = f"-Duser.timezone=UTC -Dlog4j2.configurationFile=file:{PROJECT_ROOT}/conf/log4j2.properties"
    cmd = [str(BIN / "spark-submit"), "--master", "local[2]", "--driver-class-path", class_path,
           "--driver-java-options", java_options,
           str(PROJECT_ROOT / "spark_jobs" / job), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)


def test_entry_points_under_spark_submit(sample, tmp_path):
    settings = settings_in(tmp_path)
    seed_dataset(settings, sample, log=lambda m: None)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPAREL_")}
    env.update({"APPAREL_ENV": "ci", "APPAREL_LAKEHOUSE": settings.lakehouse, "APPAREL_LANDING": settings.landing,
                "APPAREL_STORE_DB": settings.store_db, "PATH": f"{BIN}:{env['PATH']}",
                "PYSPARK_PYTHON": sys.executable})
    # CP=$(apparel jars | paste -sd:), as the README does it in local mode
    jars = ":".join(subprocess.run([str(BIN / "apparel"), "jars"], env=env, capture_output=True, text=True,
                                   check=True).stdout.split())

    proc = submit(env, jars, "bronze_ingest.py")
    assert proc.returncode == 0, f"bronze_ingest.py failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"

    from apparel.spark import get_spark

    spark = get_spark(settings)
    catalog = Catalog(settings)
    # every source file lands whole, the store's tables and the workbooks alike, counted with pandas
    sources = em.read_sources(sample)
    assert len(sources) == 7
    expected = {t: len(df) for t, df in sources.items()}

    def bronze_counts():
        return in_parallel(sources, lambda t: catalog.read(spark, f"bronze.{t}").count())

    assert bronze_counts() == expected

