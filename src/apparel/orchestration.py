"""What the Airflow DAGs in ``dags/`` share: the lakehouse tables as Assets, default task arguments, and the
operator that submits one of ``spark_jobs/`` with the project's settings.

Nothing here reads a file or starts a JVM at import time: the DAG files stay cheap to parse. The settings
(``conf/*.yaml`` and ``APPAREL_*``) and the cached jars are read when a task runs, on the worker.

The run date. Each Spark job gets ``--run-date``: the DAG run's logical date (``ds``) when it has one (a
scheduled run, a backfill, ``airflow dags test``). Asset-triggered runs have no logical date in Airflow 3, so
the producing task stores its run date in the extra of its asset events, and the consuming run takes the
latest of those. A backfill of the ingestion DAG therefore carries its date through silver and gold.
"""

from __future__ import annotations

import os
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset

from apparel.catalog import TABLES
from apparel.config import PROJECT_ROOT
from apparel.schemas import SOURCES

SPARK_CONN_ID = "spark_apparel"
SPARK_JOBS = PROJECT_ROOT / "spark_jobs"
TAGS = ["apparel", "lakehouse"]
RUN_DATE_KEY = "run_date"


# the DAGs' time schedules (cron or preset): environment variable and default. Read when a DAG file is parsed,
# from the environment only (parsing reads no settings file).
SCHEDULES = {
    "apparel_ingestion": ("APPAREL_INGEST_SCHEDULE", "@daily"),
    # weekly, Sunday 04:00 UTC: away from the daily ingestion at midnight and the layers it triggers
    "apparel_maintenance": ("APPAREL_MAINTENANCE_SCHEDULE", "0 4 * * 0"),
    "apparel_stream_health": ("APPAREL_STREAM_HEALTH_SCHEDULE", "*/5 * * * *"),
}


def schedule(dag_id: str) -> str:
    """The schedule of a time-scheduled DAG: its ``APPAREL_*_SCHEDULE`` variable, else the default above."""
    var, default = SCHEDULES[dag_id]
    return os.environ.get(var, "").strip() or default


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """An integer setting from the environment, never below ``minimum``."""
    raw = os.environ.get(name, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = default
    return max(value, minimum)


def default_args() -> dict[str, Any]:
    """Task defaults: at least two retries with exponential backoff (APPAREL_AIRFLOW_RETRY_DELAY seconds
    before the first retry, doubling up to ten minutes)."""
    return {
        "owner": "data-platform",
        "retries": env_int("APPAREL_AIRFLOW_RETRIES", 2, minimum=2),
        "retry_delay": timedelta(seconds=env_int("APPAREL_AIRFLOW_RETRY_DELAY", 60, minimum=1)),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
    }


def dag_defaults(layer: str) -> dict[str, Any]:
    """What every DAG of the project sets the same way: start date, no catch-up (backfills are explicit),
    one run at a time (Spark is the single writer of each table), task defaults and tags."""
    import pendulum

    return {"start_date": pendulum.datetime(2026, 1, 1, tz="UTC"), "catchup": False, "max_active_runs": 1,
            "default_args": default_args(), "tags": [*TAGS, layer]}


def asset(table: str) -> Asset:
    """The Asset of one lakehouse table (``silver.fct_orders``). Its URI is logical, not the storage path,
    so it stays the same when the lakehouse moves from local disk to object storage."""
    if table not in TABLES:
        raise KeyError(f"unknown lakehouse table {table!r}")
    layer, name = table.split(".", 1)
    return Asset(name=table, uri=f"apparel://lakehouse/{layer}/{name}", group="lakehouse")


def assets(tables: Iterable[str]) -> list[Asset]:
    return [asset(t) for t in tables]


def layer_tables(layer: str) -> list[str]:
    """The tables of a layer that the batch DAGs write (the stream's ``bronze.cdc_*`` are no batch Assets: the
    transform DAG waits for every bronze Asset)."""
    return [name for name, info in TABLES.items() if info.layer == layer and not info.table.startswith("cdc_")]


def bronze_tables(group: str) -> list[str]:
    """The bronze tables one ingestion group writes: ``store`` (the database) or ``excel`` (the workbooks)."""
    return [f"bronze.{src.name}" for src in SOURCES.values() if src.origin == group]


def run_date_of(context: Any) -> date:
    """The date passed to a job as ``--run-date`` (see the module docstring)."""
    logical = context.get("logical_date")
    if logical is not None:
        return logical.date()
    dates = []
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            value = (getattr(event, "extra", None) or {}).get(RUN_DATE_KEY)
            if value:
                dates.append(date.fromisoformat(str(value)[:10]))
    if dates:
        return max(dates)
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None)
    return run_after.date() if isinstance(run_after, datetime) else datetime.now().date()


def launch_conf(settings, jars: list[str] | None = None) -> dict[str, str]:
    """The Spark settings that must be on the spark-submit command line (the driver JVM reads them at launch);
    ``jars`` (the driver's class path in local mode) choose its class archive (:mod:`apparel.cds`)."""
    from apparel.spark import LAUNCH_SETTINGS, session_conf

    conf = session_conf(settings, jars=list(jars or []))
    # the jars go on the command line as --driver-class-path or --jars
    keep = LAUNCH_SETTINGS - {"spark.master", "spark.jars", "spark.app.name", "spark.driver.extraClassPath"}
    return {k: v for k, v in conf.items() if k in keep and v}


def accept_shrink_args(application: str, context: Any) -> list[str]:
    """``--accept-shrink T`` for each table of the DAG run's conf ``{"accept_shrink": ["cities", ...]}`` (trigger
    the ingestion with it to land master snapshots that lost more keys than bronze.snapshot_max_loss_percent);
    only the bronze job takes it."""
    dag_run = context.get("dag_run") if hasattr(context, "get") else None
    conf = (getattr(dag_run, "conf", None) or {}) if dag_run is not None else {}
    tables = conf.get("accept_shrink") or []
    if isinstance(tables, str):
        tables = [tables]
    if not Path(application).name.startswith("bronze_ingest") or not tables:
        return []
    return [arg for t in tables for arg in ("--accept-shrink", str(t))]


class SparkJobOperator(SparkSubmitOperator):
    """``SparkSubmitOperator`` for one of ``spark_jobs/``.

    At run time it adds what comes from the project's settings: the cached jars (``apparel jars``; on the
    driver's class path in local mode, where one JVM runs everything, else ``--jars``), the
    driver's launch settings, ``--run-date`` and the project's Python for the Spark workers. After a
    successful job it records the run date in the extra of its asset events. The master comes from the
    Airflow connection ``spark_apparel`` (``AIRFLOW_CONN_SPARK_APPAREL``).
    """

    def __init__(self, *, job: str, args: Iterable[str] = (), **kwargs: Any) -> None:
        application = SPARK_JOBS / job
        python = sys.executable
        env = {"PYSPARK_PYTHON": python, "PYSPARK_DRIVER_PYTHON": python,
               "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        super().__init__(application=str(application), application_args=list(args), conn_id=SPARK_CONN_ID,
                         name=f"apparel-{Path(job).stem}", env_vars=env, verbose=False, **kwargs)

    def execute(self, context: Any) -> None:
        from apparel.config import load_settings
        from apparel.jars import jars_for

        settings = load_settings()
        run_date = run_date_of(context).isoformat()
        self.log.info("lakehouse %s, store %s, run date %s", settings.lakehouse,
                      settings.store_db.split("@")[-1], run_date)
        jars = jars_for(settings, log=self.log.info)
        if self._local_master():  # one JVM: --jars would copy each jar (the S3 bundle's 686 MB too) per job
            self.driver_class_path = os.pathsep.join(jars)
            self.conf = {**launch_conf(settings, jars), **(self.conf or {})}
        else:
            self.jars = ",".join(jars)
            self.conf = {**launch_conf(settings), **(self.conf or {})}
        self.application_args = [*self.application_args, "--run-date", run_date,
                                 *accept_shrink_args(self.application, context)]
        # the job's row of ops.run_log and its run lock name the task that submitted it
        self.env_vars = {**(self.env_vars or {}), "APPAREL_RUN_TRIGGER": f"airflow:{self.dag_id}/{self.task_id}"}
        super().execute(context)
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra[RUN_DATE_KEY] = run_date


    def _local_master(self) -> bool:
        """Whether the Airflow connection's master is Spark's local mode (the default, ``local[*]``)."""
        from airflow.sdk import BaseHook

        from apparel.spark import is_local

        return is_local(BaseHook.get_connection(self._conn_id).host or "")


def refresh_query_layer() -> dict[str, str]:
    """The marts DAG's last step: register new lakehouse tables in Trino, so SQL users and dashboards see
    them at once (``apparel register``). Skipped when the lakehouse is on local disk, which Trino does not
    read; fails (and retries) when Trino is configured but does not answer."""
    from airflow.sdk.exceptions import AirflowSkipException

    from apparel.config import load_settings
    from apparel.errors import SetupError
    from apparel.trino_catalog import reachable, register_tables

    settings = load_settings()
    if not settings.on_s3:
        raise AirflowSkipException(f"the lakehouse {settings.lakehouse} is on local disk: Trino reads only an "
                                   "s3a:// lakehouse, so there is nothing to register")
    if not settings.trino.get("url"):
        raise AirflowSkipException("Trino is switched off (APPAREL_TRINO_URL=off)")
    if not reachable(settings):
        raise SetupError(f"Trino is not reachable at {settings.trino['url']}: the new tables are not registered")
    changed = register_tables(settings, log=print)
    print(f"query layer: {len(changed)} table(s) newly registered or re-pointed; the others were current")
    return changed


def check_stream_health() -> dict:
    """The stream health DAG's task: :func:`apparel.stream.health` (raises when the query is down or lags);
    skipped without change data capture."""
    from airflow.sdk.exceptions import AirflowSkipException

    from apparel.config import load_settings
    from apparel.stream import health

    settings = load_settings()
    if not settings.cdc.enabled:
        raise AirflowSkipException("change data capture is off (APPAREL_CDC): there is no stream to watch")
    st = health(settings, log=print)
    return {k: str(v) for k, v in st.items()}
