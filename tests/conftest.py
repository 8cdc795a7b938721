"""Shared fixtures: one Spark session for the whole test run, per-test lakehouse/landing/store settings,
the shared dataset and one run of the pipeline over it shared by the tests that only read its result, the
small generated sample and one run of the pipeline over it (likewise), the project's PostgreSQL (started with
scripts/postgres.sh), and the object store and Trino (started with scripts/services.sh). Also the order the tests
run in: the fast ones first (see pytest_collection_modifyitems)."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import io
import os
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from apparel.config import PROJECT_ROOT, Settings, load_settings

# Airflow reads AIRFLOW_HOME when it is first imported: give the test run its own, never ~/airflow, and remove it
# when the run ends (xdist's workers inherit the controller's, which removes it)
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="apparel-airflow-tests-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], ignore_errors=True)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# Trino's nodes, wherever a test starts them (scripts/trino.sh): the quick JIT only and the serial collector, as the
# tests' Spark has (conf/ci.yaml); the queries are small, and on 2 cores the CPU goes to the other worker
os.environ.setdefault("APPAREL_TRINO_JAVA_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")

# the services stack with Superset, and gold in Trino: tests/stack_fixtures.py; each test's CPU seconds:
# tests/cpu_accounting.py
pytest_plugins = ["stack_fixtures", "cpu_accounting"]

# The order the tests run in, so that a broken transform fails within minutes: the unit tests, then the
# integration tests that need no service (first those that compare the transforms with the independent model),
# then the real Airflow, then the object store, Trino and Superset; the change data capture modules start the
# integration tests, being the longest unit. A module stays in one piece (its
# module-scoped fixtures are built once), and keeps the order of its tests. scripts/test.sh runs them on
# pytest-xdist workers (two); each worker takes the next group in this order when it is free. (Handing out the
# longest units first balanced the two workers but ran the change data capture, Airflow and test_incremental at
# the same time: the suite took 1.9-2.0 ks instead of 1.7-1.8 ks, so the order stays this one.)
EARLY_MODULES = ["test_pipeline_shared.py", "test_contract_dirty.py", "test_cli.py"]


def _tier(item: pytest.Item) -> int:
    if "unit" in item.path.parts:
        return 0
    marks = {m.name for m in item.iter_markers()}
    return 3 if "services" in marks else 2 if marks & {"airflow", "slow"} else 1


def pytest_collection_modifyitems(config, items):
    tier: dict[Path, int] = {}
    for item in items:
        tier[item.path] = max(tier.get(item.path, 0), _tier(item))

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        if name in CDC_MODULES:  # the longest unit (about 10 minutes): first of the integration tests, so that
            return 1, -1         # it runs on one worker while the others go through the rest
        return tier[item.path], EARLY_MODULES.index(name) if name in EARLY_MODULES else len(EARLY_MODULES)

    items.sort(key=rank)  # stable: collection order within a rank
    _check_service_modules(items)


# The modules whose tests use the object store, Trino or Superset (the `services` fixture): under pytest-xdist
# one worker runs them all, so one process starts those servers and stops them when no test needs them.
SERVICE_MODULES = {"test_lakehouse_s3.py", "test_notebooks.py", "test_superset.py", "test_scaled_services.py"}
# The modules that read the session's run of the shared dataset (the `shared_lake` fixture, a whole pipeline run):
# one worker runs them, so that the run is built once. tests/contract/ and the SERVICE_MODULES (their gold in
# Trino is shared_lake's, their s3a:// run is compared with it) join them.
SHARED_LAKE_MODULES = {"test_pipeline_shared.py", "test_crash.py", "test_duckdb_reference.py"}
# Likewise the modules that start and stop the Kafka broker and Kafka Connect (scripts/kafka.sh, connect.sh).
CDC_MODULES = {"test_kafka.py", "test_stream.py"}


def _check_service_modules(items) -> None:
    """A module with a `services` test must be in SERVICE_MODULES (or two workers could start the servers)."""
    for marker, group, name in (("services", SERVICE_MODULES, "SERVICE_MODULES"), ("cdc", CDC_MODULES, "CDC_MODULES")):
        missing = sorted({item.path.name for item in items if item.get_closest_marker(marker)} - group)
        if missing:
            raise pytest.UsageError(f"tests/conftest.py: add {', '.join(missing)} to {name}")


if importlib.util.find_spec("xdist") is not None:
    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(config, log):
        """scripts/test.sh runs the tests on two pytest-xdist workers. A work unit goes whole to one worker: a
        unit test alone, an integration module whole (its module-scoped fixtures are built once), the
        SHARED_LAKE_MODULES with tests/contract/ and the SERVICE_MODULES, and the CDC_MODULES. Units are handed
        out in the order above, each to the next free worker.
        (Our own grouping: `--dist loadgroup` loses its groups with pytest 9.2, pytest-xdist#1386.)"""
        from xdist.scheduler import LoadScopeScheduling

        class ModuleScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                path = nodeid.split("::", 1)[0]
                if path.startswith("tests/unit/"):
                    return nodeid
                name = Path(path).name
                if name in SHARED_LAKE_MODULES | SERVICE_MODULES or path.startswith("tests/contract/"):
                    return "shared_lake"  # one worker builds the session's run of the shared dataset
                return "cdc" if name in CDC_MODULES else path

        return ModuleScheduling(config, log)


def pytest_sessionfinish(session, exitstatus):
    """With APPAREL_TESTS_NO_SKIP=1 (CI, when the shared dataset is there) a skipped test fails the run: there,
    a skip can only hide a real failure (Airflow not importable, the dataset not found)."""
    if os.environ.get("APPAREL_TESTS_NO_SKIP") != "1" or exitstatus != pytest.ExitCode.OK:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for report in skipped:
            reporter.write_line(f"skipped, which APPAREL_TESTS_NO_SKIP=1 forbids: {report.nodeid} "
                                f"({report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr})",
                                red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def quiet(_msg) -> None:
    pass


def _shared_dataset() -> Path:
    """The store's real dataset: $APPAREL_SHARED_DATASET, else ../shared/datasets/django_apparel beside the
    checkout (where CI has it)."""
    if os.environ.get("APPAREL_SHARED_DATASET"):
        return Path(os.environ["APPAREL_SHARED_DATASET"])
    return PROJECT_ROOT.parent / "shared" / "datasets" / "django_apparel"


SHARED_DATASET = _shared_dataset()


@pytest.fixture(scope="session")
def spark():
    from apparel.spark import get_spark

    session = get_spark(load_settings(env="ci"), app_name="apparel-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def shared_dataset() -> Path:
    if not (SHARED_DATASET / "orders.csv").exists():
        pytest.skip(f"the shared dataset is not at {SHARED_DATASET} (set APPAREL_SHARED_DATASET)")
    return SHARED_DATASET


@dataclass(frozen=True)
class Lake:
    """A project folder (store database, landing area, lakehouse, reports) and its settings."""
    folder: Path
    settings: Settings


SHARED_RUN_DATE = date(2026, 1, 1)


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@contextmanager
def _read_only(folder: Path, what: str):
    """Fails, when the block ends, if a file under ``folder`` was added, removed or changed within it."""
    before = _files(folder)
    yield
    after = _files(folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"a test wrote to the read-only {what} (use copy_lake): {changed[:10]}"


@pytest.fixture(scope="session")
def shared_lake(spark, shared_dataset, tmp_path_factory) -> Lake:
    """The shared dataset seeded and run through bronze, silver and gold once for the whole session (run date
    2026-01-01, APPAREL_LIVE_NOW the dataset's last order time), for the tests that only read the result. It is
    read-only: a test that changes it works on ``copy_lake(shared_lake, folder)``. At the end of the session every
    file must be as the run left it, else a test wrote to it and the session fails here."""
    from apparel.pipeline import run_layers
    from apparel.seed import seed_dataset

    folder = tmp_path_factory.mktemp("shared_lake")
    # gold.dm_sales_live's "now" pinned to the dataset's last order, so that its window holds the last two days
    settings = settings_in(folder, live_now=last_order_time(shared_dataset))
    seed_dataset(settings, shared_dataset, log=quiet)
    run_layers(spark, settings, ["bronze", "silver", "gold"], log=quiet, run_date=SHARED_RUN_DATE)
    with _read_only(folder, "shared lakehouse"):
        yield Lake(folder, settings)


# The small generated sample (scale 0.05: 350 orders) of the tests whose point does not depend on the data's
# size: Airflow's DAGs (test_airflow.py), maintenance (test_maintain.py), spark-submit (test_spark_submit.py).
SAMPLE_SCALE, SAMPLE_SEED = 0.05, 5
SAMPLE_RUN_DATE = date(2026, 3, 2)  # test_airflow.py's day


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Path:
    """The project's generated sample (what `apparel seed --scale 0.05 --seed 5` loads), as files."""
    from apparel.generator import generate

    folder = tmp_path_factory.mktemp("sample")
    generate(folder, scale=SAMPLE_SCALE, seed=SAMPLE_SEED)
    return folder


@pytest.fixture(scope="session")
def sample_lake(spark, sample, tmp_path_factory) -> Lake:
    """``sample`` seeded and run through bronze, silver and gold once for the whole test run, in-process as
    `apparel run` runs them (run date SAMPLE_RUN_DATE). Read-only like ``shared_lake``: test_airflow.py compares
    the tables its DAGs build with it, test_maintain.py works on a copy (``copy_lake``)."""
    from apparel.pipeline import run_layers
    from apparel.seed import seed_dataset

    # built once for the whole run: the first pytest-xdist worker to need it builds it in the run's common temporary
    # folder while any other waits, then reads it (the sample is the same on every worker: a fixed seed)
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    folder = root / "sample_lake"
    settings = settings_in(folder)
    with open(root / "sample_lake.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "sample_lake.built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a worker that failed building it left
            seed_dataset(settings, sample, log=quiet)
            run_layers(spark, settings, ["bronze", "silver", "gold"], log=quiet, run_date=SAMPLE_RUN_DATE)
            (root / "sample_lake.built").touch()
    with _read_only(folder, "sample lakehouse"):
        yield Lake(folder, settings)


def in_parallel(names, task, threads: int = 4) -> dict:
    """``{name: task(name)}``, ``threads`` names at a time (the first failure is raised). Spark runs the actions
    of different threads concurrently, and on a small table each is mostly driver-side latency."""
    from apparel.catalog import run_parallel

    return run_parallel({name: (lambda name=name: task(name)) for name in names}, threads)


def assert_same_rows(got, want) -> None:
    """``assertDataFrameEqual(got, want)`` (schemas equal as it compares them, then rows in any order, doubles
    to its tolerance), with both sides' rows read in one Spark action: one union, each row tagged with its side."""
    from pyspark.sql import Row
    from pyspark.sql import functions as F
    from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

    assertSchemaEqual(got.schema, want.schema)  # what assertDataFrameEqual checks first
    side = "_assert_same_rows_side"
    tagged = got.withColumn(side, F.lit(0)).unionAll(want.withColumn(side, F.lit(1))).collect()
    row = Row(*got.columns)
    rows: tuple[list, list] = ([], [])
    for r in tagged:
        rows[r[-1]].append(row(*r[:-1]))
    assertDataFrameEqual(*rows)


def last_order_time(dataset: Path) -> str:
    """The latest order_date of a dataset folder's orders.csv, as an ISO timestamp (APPAREL_LIVE_NOW)."""
    import pandas as pd

    return pd.to_datetime(pd.read_csv(dataset / "orders.csv")["order_date"], errors="coerce").max().isoformat()


def copy_lake(lake: Lake, folder: Path) -> Settings:
    """A copy of ``lake`` (store database, landing area, lakehouse) in ``folder``, to change freely; the same
    APPAREL_LIVE_NOW."""
    shutil.copytree(lake.folder, folder)
    return settings_in(folder, live_now=lake.settings.raw.get("stream", {}).get("live_now") or None)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """URL of the project's PostgreSQL server (the `apparel` database); started once per test run."""
    script = PROJECT_ROOT / "scripts" / "postgres.sh"
    proc = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/postgres.sh start failed:\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def _fresh_postgres_db(server_url: str) -> str:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = server_url.rsplit("/", 1)[0] + f"/{name}"
    # as scripts/postgres.sh readies the `apparel` database: the read-only role reads what the owner creates
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {READ_ROLE}")
    return url


READ_ROLE = "apparel_reader"  # scripts/postgres.sh's read-only role


def read_url(store_db: str) -> str:
    """The URL of the same PostgreSQL database as the read-only role (the extraction's)."""
    from urllib.parse import urlparse

    parsed = urlparse(store_db)
    return parsed._replace(netloc=f"{READ_ROLE}@{parsed.hostname}:{parsed.port}").geturl()


@pytest.fixture(scope="session")
def services():
    """The native object store and Trino, started with the README's command (`make services-up`, which runs
    scripts/services.sh); stopped (`make services-down`) if this fixture started them, once no later test uses
    them. Scaled out like the `stack` fixture's (stack_fixtures.SCALED_OUT)."""
    from stack_fixtures import SCALED_OUT, SERVICES_TEARDOWN

    def make(target: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", "-s", target], cwd=PROJECT_ROOT, capture_output=True, text=True,
                              env=os.environ | SCALED_OUT)

    was_up = make("services-status").returncode == 0
    proc = make("services-up")
    if proc.returncode != 0:
        raise RuntimeError(f"make services-up failed:\n{proc.stdout}{proc.stderr}")
    # stopped after the last test that uses the services (tests/stack_fixtures.py), or at the session's end
    stop = SERVICES_TEARDOWN.add(lambda: was_up or make("services-down"))
    yield
    stop()


SERVICE_VARS = ("APPAREL_S3_", "APPAREL_TRINO_")


def project_env(folder: Path, store_db: str | None = None) -> dict[str, str]:
    """The environment of an isolated lakehouse, landing area, reports and store database under ``folder``.
    The services' settings (object store, Trino) carry over; the project's state is per test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPAREL_") or k.startswith(SERVICE_VARS)}
    env.update({"APPAREL_LAKEHOUSE": str(folder / "lakehouse"), "APPAREL_LANDING": str(folder / "landing"),
                "APPAREL_REPORTS": str(folder / "reports"),
                "APPAREL_STORE_DB": store_db or f"sqlite:///{folder / 'store.db'}"})
    if store_db and store_db.startswith("postgresql://"):  # the extraction reads as the read-only role
        env["APPAREL_STORE_READ_DB"] = read_url(store_db)
    return env


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``apparel ARGS`` through the CLI's entry point in this process (a Spark command takes the session's Spark
    instead of starting a JVM of its own), with only the ``APPAREL_*`` settings of ``env``; returns the exit code,
    stdout and stderr."""
    from apparel import cli

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        for key in [k for k in os.environ if k.startswith("APPAREL_")]:
            mp.delenv(key)
        for key, value in env.items():
            if key.startswith("APPAREL_"):
                mp.setenv(key, value)
        rc = cli.main(list(args))
    return rc, out.getvalue(), err.getvalue()


def settings_in(folder: Path, store_db: str | None = None, live_now: str | None = None, **overrides) -> Settings:
    """Settings for an isolated lakehouse, landing area, reports and store database under ``folder``; ``live_now``
    pins APPAREL_LIVE_NOW."""
    env = project_env(folder, store_db) | ({"APPAREL_LIVE_NOW": live_now} if live_now else {})
    return load_settings(env="ci", environ=env, **overrides)


@pytest.fixture
def make_settings(tmp_path, request):
    """Build settings under tmp_path; ``store`` is "sqlite", "postgres" (a fresh database) or a URL."""

    def _make(store: str = "sqlite", **overrides) -> Settings:
        if store == "postgres":
            store = _fresh_postgres_db(request.getfixturevalue("postgres_server"))
        return settings_in(tmp_path, None if store == "sqlite" else store, **overrides)

    return _make
