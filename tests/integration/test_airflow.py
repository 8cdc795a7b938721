"""Airflow 3 running the project's DAGs for real: `airflow dags test` submits the Spark jobs through
SparkSubmitOperator (real spark-submit, real Delta) with a SQLite metadata database of the test's own.

- ingestion -> transform -> marts on the seeded shared dataset gives the gold of `apparel run`;
- replaying logical dates (a later date, then the earlier one again) changes no table;
- a failing Spark job fails its task with the Spark error in the log, emits no asset event (so the
  asset-scheduled transform is not triggered), and a re-run after the fix lands exactly once;
- `scripts/airflow.sh start` answers its health endpoint and serves the three DAGs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F

pytest.importorskip("airflow.sdk", reason="Airflow is installed by `make airflow-setup` (and `make test`)")

import expected_model as em  # noqa: E402
from apparel.catalog import Catalog  # noqa: E402
from apparel.config import PROJECT_ROOT  # noqa: E402
from apparel.pipeline import run_layers  # noqa: E402
from apparel.seed import seed_dataset  # noqa: E402
from conftest import settings_in  # noqa: E402

pytestmark = pytest.mark.slow
AIRFLOW = str(Path(sys.executable).parent / "airflow")
SCRIPT = PROJECT_ROOT / "scripts" / "airflow.sh"
CHAIN = ["apparel_ingestion", "apparel_transform", "apparel_marts"]
D1, D2 = "2026-03-01", "2026-03-02"
SILVER = ["silver.dim_date", "silver.dim_customer", "silver.dim_product", "silver.dim_location",
          "silver.fct_order_lines", "silver.fct_orders"]
GOLD = ["gold.dm_sales_monthly", "gold.dm_product_monthly", "gold.dm_product_ranking", "gold.dm_region_monthly",
        "gold.dm_category_gender_monthly", "gold.dm_customer_rfm", "gold.dm_customer_cohorts",
        "gold.dm_basket_pairs"]
BRONZE = ["bronze.customers", "bronze.products", "bronze.product_categories", "bronze.orders",
          "bronze.order_details", "bronze.provinces", "bronze.cities"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_env(home: Path, settings) -> dict[str, str]:
    """The environment `scripts/airflow.sh` gives Airflow, with AIRFLOW_HOME under the test's folder and the
    project's settings pointing at the test's lakehouse and store."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("APPAREL_", "AIRFLOW"))}
    base["APPAREL_AIRFLOW_HOME"] = str(home)
    out = subprocess.run(["bash", str(SCRIPT), "env"], env=base, capture_output=True, text=True, check=True).stdout
    env = dict(base)
    for line in out.splitlines():
        _, assignment = shlex.split(line)
        key, value = assignment.split("=", 1)
        env[key] = value
    env.update({"APPAREL_ENV": "ci", "APPAREL_LAKEHOUSE": settings.lakehouse, "APPAREL_LANDING": settings.landing,
                "APPAREL_STORE_DB": settings.store_db, "APPAREL_REPORTS": settings.reports,
                "APPAREL_AIRFLOW_RETRY_DELAY": "1", "TZ": "UTC"})
    return env


def airflow(env, *args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=PROJECT_ROOT)


def dags_test(env, dag_id: str, day: str) -> subprocess.CompletedProcess:
    proc = airflow(env, "dags", "test", dag_id, day)
    proc.log = proc.stdout + proc.stderr  # type: ignore[attr-defined]
    return proc


def run_chain(env, day: str) -> dict[str, str]:
    logs = {}
    for dag_id in CHAIN:
        proc = dags_test(env, dag_id, day)
        assert proc.returncode == 0, f"{dag_id} {day} failed:\n{proc.log[-6000:]}"
        logs[dag_id] = proc.log
    return logs


def metadata(home: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(home / "airflow.db") as conn:
        return conn.execute(sql, params).fetchall()


def snapshot(spark, catalog: Catalog, tables: list[str]) -> dict:
    out = {}
    for name in tables:
        pdf = catalog.read(spark, name).toPandas()
        out[name] = pdf.sort_values(list(pdf.columns)).reset_index(drop=True)
    return out


def assert_same_tables(a: dict, b: dict) -> None:
    import pandas as pd

    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False, obj=name)


def gold_figures(spark, catalog: Catalog) -> dict[str, tuple]:
    """Row count and every revenue column's total, per gold table."""
    figures = {}
    for name in GOLD:
        df = catalog.read(spark, name)
        cols = [c for c, t in df.dtypes if c.startswith("revenue") and t in ("bigint", "int", "double")
                and not c.endswith(("_pct", "_rank"))]
        row = df.agg(F.count(F.lit(1)), *[F.sum(c) for c in cols]).collect()[0]
        figures[name] = tuple(row)
    return figures


@pytest.fixture(scope="module")
def af(spark, shared_dataset, tmp_path_factory):
    """A seeded store (the shared dataset), a lakehouse for Airflow, and a migrated Airflow home."""
    root = tmp_path_factory.mktemp("airflow_e2e")
    settings = settings_in(root)
    seed_dataset(settings, shared_dataset, log=lambda m: None)
    home = root / "airflow_home"
    env = airflow_env(home, settings)
    proc = airflow(env, "db", "migrate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "settings": settings, "home": home, "env": env, "catalog": Catalog(settings),
            "dataset": shared_dataset}


@pytest.fixture(scope="module")
def first_chain(af):
    return run_chain(af["env"], D1)


def test_dags_build_the_same_gold_as_apparel_run(spark, af, first_chain, tmp_path):
    # the reference: the pipeline as `apparel run` runs it, on its own lakehouse, from the same store
    ref = settings_in(tmp_path, store_db=af["settings"].store_db)
    shutil.copytree(af["settings"].landing, ref.landing)
    run_layers(spark, ref, ["bronze", "silver", "gold"], log=lambda m: None, run_date=date.fromisoformat(D1))
    ours, theirs = gold_figures(spark, af["catalog"]), gold_figures(spark, Catalog(ref))
    assert ours == theirs
    # and both hold the store's real revenue, computed with pandas from the source files
    revenue = int(em.fact_lines(em.read_sources(af["dataset"]))["revenue"].sum())
    assert ours["gold.dm_sales_monthly"][1] == revenue == 4_929_880_000
    assert ours["gold.dm_product_ranking"][1] == revenue
    # the run date travelled from the ingestion's logical date to silver (asset-triggered runs have none)
    dq = af["catalog"].read(spark, "ops.dq_results").toPandas()
    assert set(dq["run_date"].astype(str)) == {D1} and len(dq) == 7


def test_task_logs_show_the_row_accounting(first_chain):
    for dag_id in ("apparel_transform", "apparel_marts"):
        log = first_chain[dag_id]
        assert "from ops.dq_results" in log, dag_id
        accounting = [ln for ln in log.splitlines() if "order_details" in ln and " = " in ln and "yes" in ln]
        assert accounting and "18,322 =   18,322 +" in accounting[-1], accounting
    assert "--run-date 2026-03-01" in first_chain["apparel_ingestion"]


def test_marts_skip_the_query_layer_on_a_local_lakehouse(af, first_chain):
    states = dict(metadata(af["home"], "SELECT task_id, state FROM task_instance WHERE dag_id = 'apparel_marts'"))
    assert states == {"gold_build": "success", "refresh_query_layer": "skipped"}
    assert "Trino reads only an s3a:// lakehouse" in first_chain["apparel_marts"]


def test_asset_events_carry_the_run_date(af, first_chain):
    rows = metadata(af["home"], "SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                                "WHERE e.source_dag_id = 'apparel_ingestion'")
    assert {name for name, _ in rows} == set(BRONZE)
    assert {json.loads(extra)["run_date"] for _, extra in rows} == {D1}


def test_replaying_logical_dates_is_idempotent(spark, af, first_chain):
    catalog = af["catalog"]
    after_d1 = snapshot(spark, catalog, SILVER + GOLD)
    bronze_d1 = {t: catalog.read(spark, t).count() for t in BRONZE}
    run_chain(af["env"], D2)          # the next day: nothing new in the store
    after_d2 = snapshot(spark, catalog, SILVER + GOLD)
    run_chain(af["env"], D1)          # a backfill of the first day again
    after_replay = snapshot(spark, catalog, SILVER + GOLD)
    assert_same_tables(after_d1, after_d2)
    assert_same_tables(after_d2, after_replay)
    assert {t: catalog.read(spark, t).count() for t in BRONZE} == bronze_d1
    assert bronze_d1["bronze.order_details"] == 18322
    # every run was recorded: 3 silver runs of 7 source tables, with the dates they were given
    dq = catalog.read(spark, "ops.dq_results").toPandas()
    assert sorted(dq.groupby("run_id")["run_date"].first().astype(str)) == [D1, D1, D2]
    assert (dq.rows_read == dq.rows_written + dq.rows_quarantined + dq.duplicates_removed).all()


def test_a_failing_job_fails_its_task_and_triggers_nothing(spark, tmp_path, shared_dataset):
    settings = settings_in(tmp_path)
    seed_dataset(settings, shared_dataset, log=lambda m: None)
    cities = Path(settings.landing) / "cities.xlsx"
    moved = tmp_path / "cities.xlsx"
    shutil.move(cities, moved)  # the operations workbook has not arrived
    home = tmp_path / "airflow_home"
    env = airflow_env(home, settings)
    assert airflow(env, "db", "migrate").returncode == 0
    # unpause the consumer so asset events would queue it (no scheduler runs here, nothing starts it)
    airflow(env, "dags", "reserialize")
    assert airflow(env, "dags", "unpause", "apparel_transform").returncode == 0

    failed = dags_test(env, "apparel_ingestion", D1)
    # the Spark job's own error line, through spark-submit, in the task log
    assert "error: " in failed.log and "cities.xlsx" in failed.log, failed.log[-4000:]
    states = dict(metadata(home, "SELECT task_id, state FROM task_instance WHERE dag_id = 'apparel_ingestion'"))
    assert states == {"bronze_store": "success", "bronze_excel": "failed"}
    tries = metadata(home, "SELECT try_number FROM task_instance WHERE task_id = 'bronze_excel'")[0][0]
    assert tries == 3  # the first attempt and two retries
    assert metadata(home, "SELECT state FROM dag_run WHERE dag_id = 'apparel_ingestion'") == [("failed",)]
    # no asset event for the tables the failed task writes, so the transform is not triggered
    events = {r[0] for r in metadata(home, "SELECT a.name FROM asset_event e JOIN asset a ON a.id = e.asset_id")}
    assert events == set(BRONZE) - {"bronze.provinces", "bronze.cities"}
    queued = {r[0] for r in metadata(home, "SELECT a.name FROM asset_dag_run_queue q JOIN asset a "
                                           "ON a.id = q.asset_id WHERE q.target_dag_id = 'apparel_transform'")}
    assert "bronze.cities" not in queued
    assert metadata(home, "SELECT count(*) FROM dag_run WHERE dag_id = 'apparel_transform'") == [(0,)]
    catalog = Catalog(settings)
    assert not catalog.exists(spark, "bronze.cities")

    # the workbook arrives; the re-run lands it, and the store tables are not landed twice
    shutil.move(moved, cities)
    rerun = dags_test(env, "apparel_ingestion", D2)
    assert rerun.returncode == 0, rerun.log[-4000:]
    counts = {t: catalog.read(spark, t).count() for t in BRONZE}
    assert counts == {"bronze.customers": 200, "bronze.products": 43, "bronze.product_categories": 2,
                      "bronze.orders": 7000, "bronze.order_details": 18322, "bronze.provinces": 11,
                      "bronze.cities": 222}
    queued = {r[0] for r in metadata(home, "SELECT a.name FROM asset_dag_run_queue q JOIN asset a "
                                           "ON a.id = q.asset_id WHERE q.target_dag_id = 'apparel_transform'")}
    assert queued == set(BRONZE)  # every bronze Asset updated: the transform is now due


def test_standalone_answers_its_health_endpoint(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPAREL_", "AIRFLOW"))}
    env.update({"APPAREL_AIRFLOW_HOME": str(tmp_path / "home"), "APPAREL_AIRFLOW_PORT": str(port),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())})
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=400)
        assert start.returncode == 0, start.stderr[-4000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=10) as resp:
            health = json.load(resp)
        assert {health[k]["status"] for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {"healthy"}
        # log in as the documented admin and list the DAGs through the REST API
        password = json.loads((tmp_path / "home" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/auth/token", method="POST",
                                     data=json.dumps({"username": "admin", "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            token = json.load(resp)["access_token"]
        dag_ids: set[str] = set()
        for _ in range(60):  # the dag-processor parses the folder shortly after the start
            req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/dags",
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                dag_ids = {d["dag_id"] for d in json.load(resp)["dags"]}
            if dag_ids >= set(CHAIN):
                break
            time.sleep(2)
        assert dag_ids == set(CHAIN)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
