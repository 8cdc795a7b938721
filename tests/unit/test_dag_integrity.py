"""The DAGs in dags/ as Airflow parses them: no import errors, tags, retries, docs, Assets wired layer to
layer, every SparkSubmitOperator pointing at an existing spark_jobs/ file; and parsing starts no Spark."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("airflow.sdk", reason="Airflow is installed by `make airflow-setup` (and `make test`)")

from apparel.catalog import TABLES  # noqa: E402
from apparel.config import PROJECT_ROOT  # noqa: E402

DAGS = PROJECT_ROOT / "dags"
EXPECTED = {"apparel_ingestion", "apparel_transform", "apparel_marts", "apparel_maintenance", "apparel_stream_health"}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_imports(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == EXPECTED


def test_tags_retries_docs_and_applications(dagbag):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    for dag_id in EXPECTED:
        dag = dagbag.dags[dag_id]
        assert dag.tags and "apparel" in dag.tags, dag_id
        assert dag.doc_md and dag.doc_md.strip().startswith("###"), dag_id
        assert dag.tasks, dag_id
        for task in dag.tasks:
            assert task.doc_md == dag.doc_md
            if dag_id == "apparel_stream_health":
                continue  # a health check: no retries, no Spark (test_stream_health_runs_every_five_minutes)
            assert task.retries >= 2 and task.retry_exponential_backoff, task.task_id
            if task.task_id == "refresh_query_layer":
                continue
            assert isinstance(task, SparkSubmitOperator), task.task_id
            app = Path(task.application)
            assert app.is_file() and app.parent == PROJECT_ROOT / "spark_jobs", app
            if dag_id == "apparel_maintenance":
                continue  # changes no data: no outlets (test_maintenance_is_weekly_and_triggers_nothing)
            assert task.outlets, f"{task.task_id} declares no Asset outlets"


def test_marts_refresh_the_query_layer_after_gold(dagbag):
    marts = dagbag.dags["apparel_marts"]
    refresh = marts.get_task("refresh_query_layer")
    assert refresh.upstream_task_ids == {"gold_build"} and not refresh.downstream_task_ids


def _outlets(dag) -> set[str]:
    return {a.name for t in dag.tasks for a in t.outlets}


def _scheduled_on(dag) -> set[str]:
    return {a.name for a in dag.timetable.asset_condition.objects}


def test_assets_chain_bronze_to_silver_to_gold(dagbag):
    ingestion, transform, marts = (dagbag.dags[d] for d in ("apparel_ingestion", "apparel_transform",
                                                               "apparel_marts"))
    bronze = {"bronze." + t for t in ["customers", "products", "product_categories", "orders", "order_details",
                                      "provinces", "cities"]}
    assert _outlets(ingestion) == bronze
    assert _scheduled_on(transform) == bronze
    assert {"silver.fct_order_lines", "silver.dim_customer", "ops.dq_results",
            "quarantine.orders"} <= _outlets(transform)
    assert _scheduled_on(marts) == {n for n in _outlets(transform) if n.startswith("silver.")}
    assert len(_scheduled_on(marts)) == 7  # dim_date, dim_customer, dim_product, dim_location, dim_province, the facts
    assert {a for a in _outlets(marts)} == {n for n in _outlets(marts) if n.startswith("gold.")}
    assert _outlets(marts) == {n for n in TABLES if n.startswith("gold.")}  # the 8 marts and dm_sales_live
    # the two source groups land one at a time (both append to ops.ingest_runs)
    assert ingestion.max_active_tasks == 1 and ingestion.max_active_runs == 1


def test_maintenance_is_weekly_and_triggers_nothing(dagbag):
    """OPTIMIZE and VACUUM change no row: the maintenance task submits spark_jobs/maintain.py once a week and
    emits no Asset event, so no transform or marts run follows it."""
    from croniter import croniter

    dag = dagbag.dags["apparel_maintenance"]
    assert [t.task_id for t in dag.tasks] == ["maintain"]
    task = dag.get_task("maintain")
    assert Path(task.application).name == "maintain.py" and not task.outlets
    assert "maintenance" in dag.tags and dag.max_active_runs == 1
    cron = dag.timetable.expression
    assert cron == "0 4 * * 0"
    runs = croniter(cron, datetime(2026, 3, 2))
    first, second = runs.get_next(datetime), runs.get_next(datetime)
    assert (first.weekday(), second - first) == (6, timedelta(days=7))  # Sundays


def test_parsing_the_dags_starts_no_spark_and_reads_no_settings(tmp_path):
    """No I/O at import: parsing imports neither pyspark nor the YAML settings."""
    code = (
        "import sys, runpy, pathlib\n"
        "import apparel.config as c\n"
        "c.load_settings = lambda *a, **k: (_ for _ in ()).throw(AssertionError('settings read at parse'))\n"
        f"for f in sorted(pathlib.Path({str(DAGS)!r}).glob('*.py')):\n"
        "    runpy.run_path(str(f))\n"
        "bad = [m for m in ('pyspark', 'py4j', 'pandas') if m in sys.modules]\n"
        "print('imported:', bad)\n"
        "sys.exit(1 if bad else 0)\n")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def test_stream_health_runs_every_five_minutes_without_retries(dagbag):
    dag = dagbag.dags["apparel_stream_health"]
    assert [t.task_id for t in dag.tasks] == ["stream_health"]
    assert dag.tasks[0].retries == 0
    assert dag.timetable.expression == "*/5 * * * *"
    assert not dag.tasks[0].outlets
