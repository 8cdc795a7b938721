"""Airflow 3 running the project's DAGs for real: `airflow dags test` submits the Spark jobs through
SparkSubmitOperator (real spark-submit, real Delta). Each Airflow home gets a copy of one SQLite metadata database
migrated once for the session, and the store is seeded from the small generated sample (the session's `sample`,
scale 0.05, 350 orders): what these tests prove is about Airflow (the chain, run dates, retries, asset events),
which does not depend on the data's size. The shared dataset's figures are checked by test_pipeline_shared.py and
test_bronze.py.

One day of operations, in order, on one lakehouse (the `day` fixture):
- the day's ingestion fails: its operations workbook has not arrived. The Spark job's error reaches the task log,
  the task fails after its two retries, and it emits no asset event, so the asset-scheduled transform is not
  triggered;
- the workbook arrives, the day is run again: it lands the workbooks, and not the store's rows a second time;
- transform and marts: silver and gold equal what `apparel run` builds from the same sample on the same day (the
  session's `sample_lake`), and pandas over the source files; each job got the day as --run-date and each DAG's
  asset events carry it;
- then a backfill of the day before changes no table: bronze has nothing new, so the incremental silver and gold
  jobs get the date and write nothing (no accounting row either: nothing was judged). It replays transform and marts,
  the jobs that use the run date; the ingestion's replay is left out: landing nothing again is what the day's
  re-run already proved, and its asset events carry the date as the day's do.

And `scripts/airflow.sh start` on a fresh home (one start for the two tests that use it) migrates its database,
answers its health endpoint, logs the admin in and serves every DAG of dags/; Chromium (as for Superset's
dashboards) logs in to the UI, sees every DAG and the state of the last run of the one DAG run there, the same as
the metadata database holds, and keeps a screenshot in artifacts/airflow/dags.png.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("airflow.sdk", reason="Airflow is installed by `make airflow-setup` (and `make test`)")

import expected_model as em  # noqa: E402
from apparel.catalog import TABLES, Catalog  # noqa: E402
from apparel.config import PROJECT_ROOT  # noqa: E402
from apparel.seed import seed_dataset  # noqa: E402
from conftest import SAMPLE_RUN_DATE, in_parallel, quiet, settings_in  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.airflow]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
SCRIPT = PROJECT_ROOT / "scripts" / "airflow.sh"
ARTIFACTS = PROJECT_ROOT / "artifacts" / "airflow"
CHAIN = ["apparel_ingestion", "apparel_transform", "apparel_marts"]
DAY, DAY_BEFORE = SAMPLE_RUN_DATE.isoformat(), "2026-03-01"  # the day of the session's sample_lake
SILVER = ["silver.dim_date", "silver.dim_customer", "silver.dim_product", "silver.dim_location",
          "silver.fct_order_lines", "silver.fct_orders"]
GOLD = sorted(n for n in TABLES if n.startswith("gold."))  # the marts and dm_sales_live
BRONZE = ["bronze.customers", "bronze.products", "bronze.product_categories", "bronze.orders",
          "bronze.order_details", "bronze.provinces", "bronze.cities"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow_env(home: Path, settings=None) -> dict[str, str]:
    """The environment `scripts/airflow.sh` gives Airflow, with AIRFLOW_HOME ``home`` and, given ``settings``,
    the project's settings pointing at the test's lakehouse and store. The DAGs are created unpaused, so that
    asset events queue their consumers (no scheduler runs here: nothing starts them)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("APPAREL_", "AIRFLOW"))}
    base["APPAREL_AIRFLOW_HOME"] = str(home)
    out = subprocess.run(["bash", str(SCRIPT), "env"], env=base, capture_output=True, text=True, check=True).stdout
    env = dict(base)
    for line in out.splitlines():
        _, assignment = shlex.split(line)
        key, value = assignment.split("=", 1)
        env[key] = value
    env.update({"APPAREL_AIRFLOW_RETRY_DELAY": "1", "TZ": "UTC", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"})
    if settings is not None:
        env.update({"APPAREL_ENV": "ci", "APPAREL_LAKEHOUSE": settings.lakehouse,
                    "APPAREL_LANDING": settings.landing, "APPAREL_STORE_DB": settings.store_db,
                    "APPAREL_REPORTS": settings.reports})
    return env


def airflow(env, *args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=PROJECT_ROOT)


def dags_test(env, dag_id: str, day: str) -> str:
    """`airflow dags test` of one DAG for one logical date; returns its log (stdout and stderr)."""
    proc = airflow(env, "dags", "test", dag_id, day)
    return f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}"


def assert_ran(log: str, what: str) -> None:
    assert log.startswith("exit 0\n"), f"{what} failed:\n{log[-6000:]}"


def metadata(home: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(home / "airflow.db") as conn:
        return conn.execute(sql, params).fetchall()


def asset_events(home: Path) -> set[tuple[str, str, str]]:
    """(producing DAG, asset, run date in the event's extra) of every asset event."""
    rows = metadata(home, "SELECT e.source_dag_id, a.name, e.extra FROM asset_event e "
                          "JOIN asset a ON a.id = e.asset_id")
    return {(dag, name, json.loads(extra or "{}").get("run_date")) for dag, name, extra in rows}


def assert_events_of_a_chain(events: set[tuple[str, str, str]], run_date: str) -> None:
    """Each DAG of the chain emitted an event for each table it writes, carrying ``run_date``."""
    tables = {dag_id: {t for d, t, rd in events if d == dag_id and rd == run_date} for dag_id in CHAIN}
    assert tables["apparel_ingestion"] == set(BRONZE)
    assert tables["apparel_transform"] >= set(SILVER) | {"ops.dq_results"}  # and the quarantine tables
    assert tables["apparel_marts"] == set(GOLD)


def queued_for_transform(home: Path) -> set[str]:
    return {r[0] for r in metadata(home, "SELECT a.name FROM asset_dag_run_queue q JOIN asset a "
                                         "ON a.id = q.asset_id WHERE q.target_dag_id = 'apparel_transform'")}


def snapshot(spark, catalog: Catalog, tables: list[str]) -> dict[str, pd.DataFrame]:
    """Each table's rows, sorted (read four tables at a time)."""
    def rows(name: str) -> pd.DataFrame:
        pdf = catalog.read(spark, name).toPandas()
        return pdf.sort_values(list(pdf.columns)).reset_index(drop=True)

    return in_parallel(tables, rows)


def assert_same_tables(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False, obj=name)


def bronze_counts(spark, catalog: Catalog) -> dict[str, int]:
    return in_parallel(BRONZE, lambda t: catalog.read(spark, t).count())


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """One Airflow metadata database, migrated once (`airflow db migrate`); each Airflow home starts from a copy.
    Only the database is copied: airflow.cfg names its own home, and each home writes its own."""
    home = tmp_path_factory.mktemp("airflow_migrated")
    proc = airflow(airflow_env(home), "db", "migrate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home / "airflow.db"


@pytest.fixture(scope="module")
def day(spark, sample, migrated_db, tmp_path_factory):
    """One day of operations on a fresh lakehouse (see the module docstring). Records what each step left in
    the metadata database and the lakehouse; the tests below check it."""
    root = tmp_path_factory.mktemp("airflow_day")
    settings = settings_in(root)
    seed_dataset(settings, sample, log=quiet)
    home = root / "airflow_home"
    home.mkdir()
    shutil.copy(migrated_db, home / "airflow.db")
    env = airflow_env(home, settings)
    catalog = Catalog(settings)
    out = {"settings": settings, "catalog": catalog, "home": home, "env": env, "logs": {}}

    # the operations workbook has not arrived
    cities, held_back = Path(settings.landing) / "cities.xlsx", root / "cities.xlsx"
    shutil.move(cities, held_back)
    out["failed_log"] = dags_test(env, "apparel_ingestion", DAY)
    out["after_failure"] = {
        "states": dict(metadata(home, "SELECT task_id, state FROM task_instance WHERE dag_id = 'apparel_ingestion'")),
        "tries": metadata(home, "SELECT try_number FROM task_instance WHERE task_id = 'bronze_excel'")[0][0],
        "runs": metadata(home, "SELECT state FROM dag_run WHERE dag_id = 'apparel_ingestion'"),
        "events": asset_events(home), "queued": queued_for_transform(home),
        "transform_runs": metadata(home, "SELECT count(*) FROM dag_run WHERE dag_id = 'apparel_transform'")[0][0],
        "transform_paused": metadata(home, "SELECT is_paused FROM dag WHERE dag_id = 'apparel_transform'"),
        "bronze": {t for t in BRONZE if catalog.exists(spark, t)}}

    # the workbook arrives; the day is run again
    shutil.move(held_back, cities)
    for dag_id in CHAIN:
        out["logs"][dag_id] = log = dags_test(env, dag_id, DAY)
        assert_ran(log, f"{dag_id} {DAY}")
        if dag_id == "apparel_ingestion":
            out["queued_after_rerun"] = queued_for_transform(home)
            out["bronze_after_rerun"] = bronze_counts(spark, catalog)
    return out


def test_a_failing_job_fails_its_task_and_triggers_nothing(day):
    failed, state = day["failed_log"], day["after_failure"]
    assert not failed.startswith("exit 0\n"), failed[-4000:]
    # the Spark job's own error line, through spark-submit, in the task log
    assert "error: " in failed and "cities.xlsx" in failed, failed[-4000:]
    assert state["states"] == {"bronze_store": "success", "bronze_excel": "failed"}
    assert state["tries"] == 3  # the first attempt and two retries
    assert state["runs"] == [("failed",)]
    # no asset event for the tables the failed task writes, so the transform is not triggered
    assert state["events"] == {("apparel_ingestion", t, DAY) for t in BRONZE
                               if t not in ("bronze.provinces", "bronze.cities")}
    assert state["transform_paused"] == [(0,)]  # so it would be queued by the events it waits for
    assert "bronze.cities" not in state["queued"]
    assert state["transform_runs"] == 0
    assert "bronze.cities" not in state["bronze"] and "bronze.order_details" in state["bronze"]


def test_the_days_rerun_lands_every_row_once(day, sample):
    # counted with pandas from the sample's files: the store's rows landed by the failed run are not landed again
    src = em.read_sources(sample)
    assert day["bronze_after_rerun"] == {f"bronze.{t}": len(df) for t, df in src.items()}
    assert day["queued_after_rerun"] == set(BRONZE)  # every bronze Asset updated: the transform is now due


def test_dags_build_the_same_tables_as_apparel_run(spark, day, sample, sample_lake):
    # the reference: the pipeline as `apparel run` runs it, on its own lakehouse, from the same sample on the same
    # day (the session's run of it, read-only)
    ours = snapshot(spark, day["catalog"], SILVER + GOLD)
    assert_same_tables(ours, snapshot(spark, Catalog(sample_lake.settings), SILVER + GOLD))
    # and both hold the sample's revenue, computed with pandas from the source files
    facts = em.fact_lines(em.read_sources(sample))
    em.assert_same(day["catalog"].read(spark, "gold.dm_sales_monthly"), em.sales_monthly(facts))
    assert len(ours["gold.dm_sales_monthly"]) == 12


def test_each_job_gets_the_run_date_and_each_dag_emits_it(spark, day):
    for dag_id in CHAIN:
        assert f"--run-date {DAY}" in day["logs"][dag_id], dag_id
    events = asset_events(day["home"])
    assert {run_date for _, _, run_date in events} == {DAY}
    assert_events_of_a_chain(events, DAY)
    dq = day["catalog"].read(spark, "ops.dq_results").toPandas()
    assert set(dq["run_date"].astype(str)) == {DAY} and len(dq) == 7


def test_task_logs_show_the_row_accounting(day, sample):
    lines = len(pd.read_csv(sample / "order_details.csv"))
    for dag_id in ("apparel_transform", "apparel_marts"):
        log = day["logs"][dag_id]
        assert "from ops.dq_results" in log, dag_id
        # read = written + quarantined + duplicates removed, balanced
        assert re.search(rf"order_details\s+{lines:,}\s+=\s+{lines:,}\s+\+\s+0\s+\+\s+0\s+yes", log), dag_id


def test_each_task_is_a_run_of_the_run_log_failed_tries_included(spark, day):
    # read before the backfill below adds its two runs; oldest first
    rows = day["catalog"].read(spark, "ops.run_log").orderBy("started_at", "run_id").collect()
    excel = "airflow:apparel_ingestion/bronze_excel"
    store = ("airflow:apparel_ingestion/bronze_store", "bronze", "bronze", "succeeded")
    got = [(r.trigger, r.command, r.layers, r.status) for r in rows]
    # the failed day: the store's task and the workbooks' three tries (the two tasks in either order; the
    # failed tries, which never started Spark, were appended by the next run), then the day again, transform,
    # marts
    assert sorted(got[:4]) == sorted([store, *[(excel, "bronze", "bronze", "failed")] * 3]), got
    assert sorted(got[4:6]) == sorted([store, (excel, "bronze", "bronze", "succeeded")]), got
    assert got[6:] == [("airflow:apparel_transform/silver_build", "silver", "silver", "succeeded"),
                       ("airflow:apparel_marts/gold_build", "gold", "gold", "succeeded")], got
    assert not list((Path(day["settings"].lakehouse) / "_apparel" / "runs").glob("*.json"))
    for r in rows:
        assert r.ended_at >= r.started_at and len({x.run_id for x in rows}) == len(rows)
        assert (r.error is None) == (r.status == "succeeded"), r
        if r.error:  # the job's own one-line error, as the task log shows it
            assert "cities.xlsx" in r.error and f"error: {r.error}" in day["failed_log"], r.error


def test_marts_skip_the_query_layer_on_a_local_lakehouse(day):
    states = dict(metadata(day["home"], "SELECT task_id, state FROM task_instance WHERE dag_id = 'apparel_marts'"))
    assert states == {"gold_build": "success", "refresh_query_layer": "skipped"}
    assert "Trino reads only an s3a:// lakehouse" in day["logs"]["apparel_marts"]


def test_a_backfill_of_the_day_before_changes_no_table(spark, day):
    catalog, home = day["catalog"], day["home"]
    # the Delta version of each table, from its log: a table the backfill wrote to has a new one
    before = {n: catalog.version(spark, n) for n in SILVER + GOLD}
    assert None not in before.values(), before  # None: no such table
    logs = {}
    for dag_id in ("apparel_transform", "apparel_marts"):
        logs[dag_id] = log = dags_test(day["env"], dag_id, DAY_BEFORE)
        assert_ran(log, f"{dag_id} {DAY_BEFORE}")
        assert f"--run-date {DAY_BEFORE}" in log, dag_id
    assert {n: catalog.version(spark, n) for n in SILVER + GOLD} == before
    # nothing new in bronze: the incremental jobs got the date and judged and wrote nothing
    assert "no bronze table changed since the last silver run; nothing written" in logs["apparel_transform"]
    assert "no silver change since the last gold run; nothing written" in logs["apparel_marts"]
    dq = catalog.read(spark, "ops.dq_results").toPandas()
    assert sorted(dq.groupby("run_id")["run_date"].first().astype(str)) == [DAY]
    assert (dq.rows_read == dq.rows_written + dq.rows_quarantined + dq.duplicates_removed).all()
    backfill = {(dag_id, t) for dag_id, t, run_date in asset_events(home) if run_date == DAY_BEFORE}
    assert {t for d, t in backfill if d == "apparel_transform"} >= set(SILVER) | {"ops.dq_results"}
    assert {t for d, t in backfill if d == "apparel_marts"} == set(GOLD)
    assert not {t for d, t in backfill if d == "apparel_ingestion"}


def api(url: str, token: str | None = None, body: dict | None = None):
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    req = urllib.request.Request(url, method="POST" if body is not None else "GET", headers=headers,
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def dag_ids_in_folder() -> set[str]:
    """The DAG ids of dags/, as Airflow parses the folder (so a DAG added there is expected everywhere below)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES
    assert bag.import_errors == {}
    return set(bag.dag_ids)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """`scripts/airflow.sh start` on a fresh home, as `make airflow` starts on a fresh clone (standalone migrates
    its own database), with the project's settings pointing at an empty lakehouse of the test's; the admin's
    token, and every DAG of dags/ listed by the REST API. Stopped at the end."""
    root = tmp_path_factory.mktemp("airflow_standalone")
    home, port = root / "home", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPAREL_", "AIRFLOW"))}
    env.update({"APPAREL_AIRFLOW_HOME": str(home), "APPAREL_AIRFLOW_PORT": str(port),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())})
    settings = settings_in(root)
    env.update({"APPAREL_ENV": "ci", "APPAREL_LAKEHOUSE": settings.lakehouse, "APPAREL_LANDING": settings.landing,
                "APPAREL_STORE_DB": settings.store_db, "APPAREL_REPORTS": settings.reports,
                "APPAREL_AIRFLOW_RETRY_DELAY": "1", "TZ": "UTC"})
    url = f"http://127.0.0.1:{port}"
    try:
        start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=400)
        assert start.returncode == 0, start.stderr[-4000:]
        # log in as the documented admin: the password standalone generated
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = api(f"{url}/auth/token", body={"username": "admin", "password": password})["access_token"]
        expected, listed = dag_ids_in_folder(), set()
        for _ in range(60):  # the dag-processor parses the folder shortly after the start
            listed = {d["dag_id"] for d in api(f"{url}/api/v2/dags", token)["dags"]}
            if listed >= expected:
                break
            time.sleep(2)
        yield {"url": url, "home": home, "env": env, "password": password, "token": token, "listed": listed,
               "expected": expected, "start_output": start.stdout + start.stderr}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


def test_standalone_answers_its_health_endpoint(standalone):
    health = api(f"{standalone['url']}/api/v2/monitor/health")
    assert {health[k]["status"] for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")} == {"healthy"}
    # the REST API, with the admin's token, lists the DAGs of dags/: the chain and the weekly maintenance
    assert standalone["listed"] == standalone["expected"] >= set(CHAIN) | {"apparel_maintenance"}


def test_the_admin_password_is_in_its_file_only(standalone):
    """Generated by scripts/airflow.sh (mode 600), never printed by it, nor logged by Airflow."""
    path = standalone["home"] / "simple_auth_manager_passwords.json.generated"
    assert path.stat().st_mode & 0o077 == 0
    assert len(standalone["password"]) >= 16
    assert str(path) in standalone["start_output"] and standalone["password"] not in standalone["start_output"]
    logs = [p for p in standalone["home"].rglob("*") if p.is_file() and p != path and p.suffix != ".db"]
    assert any(p.name == "standalone.log" for p in logs)
    assert [p for p in logs if standalone["password"].encode() in p.read_bytes()] == []


def test_the_ui_shows_every_dag_and_the_last_runs_state(standalone):
    """Chromium (as for Superset) logs in through the simple auth manager's form, opens the DAGs page, sees every
    DAG of dags/ and, for the DAG run just before, the state the metadata database holds; screenshot kept in
    artifacts/airflow/dags.png."""
    from playwright.sync_api import sync_playwright

    from test_superset import CHROMIUM, CHROMIUM_ARGS

    # one real run, so there is a last run to see: the maintenance DAG, `airflow dags test` in this home (its
    # Spark job finds no table in the empty lakehouse)
    env = airflow_env(standalone["home"]) | {k: v for k, v in standalone["env"].items() if k.startswith("APPAREL_")}
    log = dags_test(env, "apparel_maintenance", DAY)
    assert_ran(log, f"apparel_maintenance {DAY}")
    runs = metadata(standalone["home"], "SELECT state FROM dag_run WHERE dag_id = 'apparel_maintenance' "
                                        "ORDER BY id DESC")
    assert runs == [("success",)]

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = standalone["url"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(f"{url}/")
        page.wait_for_url(lambda u: "/auth/login" in u)  # not logged in yet: the login form
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", standalone["password"])
        page.click("button[type=submit]")
        page.wait_for_url(lambda u: "/auth/" not in u)
        page.goto(f"{url}/dags")
        # each DAG is a card (or a table row) with a link to its page and, once it ran, its latest run's state badge
        links = {d: page.locator(f'a[href$="/dags/{d}"]') for d in sorted(standalone["expected"])}
        for link in links.values():
            link.first.wait_for(state="visible")
        page.wait_for_load_state("networkidle")
        shown = {}
        for dag_id, link in links.items():
            holder = page.locator("[data-testid=dag-card], tr").filter(has=link)
            badge = holder.locator("[data-testid=state-badge][aria-label]")
            shown[dag_id] = badge.first.get_attribute("aria-label") if badge.count() else None
        page.screenshot(path=str(ARTIFACTS / "dags.png"), full_page=True)
        browser.close()
    assert shown["apparel_maintenance"] == runs[0][0]
    # the DAGs that never ran show no last run
    assert {d: s for d, s in shown.items() if d != "apparel_maintenance"} == {
        d: None for d in standalone["expected"] - {"apparel_maintenance"}}
    assert (ARTIFACTS / "dags.png").stat().st_size > 20_000


def test_the_screenshot_is_git_ignored():
    out = subprocess.run(["git", "check-ignore", "-q", str(ARTIFACTS / "dags.png")], cwd=PROJECT_ROOT)
    assert out.returncode == 0
