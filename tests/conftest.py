"""Shared fixtures: one Spark session for the whole test run, per-test lakehouse/landing/store settings,
the shared dataset, the project's PostgreSQL (started with scripts/postgres.sh), and the object store and
Trino (started with scripts/services.sh)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from apparel.config import PROJECT_ROOT, Settings, load_settings

# Airflow reads AIRFLOW_HOME when it is first imported: give the test run its own, never ~/airflow
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="apparel-airflow-tests-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

# the services stack with Superset, and gold in Trino: tests/stack_fixtures.py
pytest_plugins = ["stack_fixtures"]

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
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def services():
    """The native object store and Trino, started with the README's command (`make services-up`, which runs
    scripts/services.sh); stopped at the end (`make services-down`) if this fixture started them."""
    def make(target: str) -> subprocess.CompletedProcess:
        return subprocess.run(["make", "-s", target], cwd=PROJECT_ROOT, capture_output=True, text=True)

    was_up = make("services-status").returncode == 0
    proc = make("services-up")
    if proc.returncode != 0:
        raise RuntimeError(f"make services-up failed:\n{proc.stdout}{proc.stderr}")
    yield
    if not was_up:
        make("services-down")


SERVICE_VARS = ("APPAREL_S3_", "APPAREL_TRINO_")


def project_env(folder: Path, store_db: str | None = None) -> dict[str, str]:
    """The environment of an isolated lakehouse, landing area, reports and store database under ``folder``.
    The services' settings (object store, Trino) carry over; the project's state is per test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPAREL_") or k.startswith(SERVICE_VARS)}
    env.update({"APPAREL_LAKEHOUSE": str(folder / "lakehouse"), "APPAREL_LANDING": str(folder / "landing"),
                "APPAREL_REPORTS": str(folder / "reports"),
                "APPAREL_STORE_DB": store_db or f"sqlite:///{folder / 'store.db'}"})
    return env


def settings_in(folder: Path, store_db: str | None = None, **overrides) -> Settings:
    """Settings for an isolated lakehouse, landing area, reports and store database under ``folder``."""
    return load_settings(env="ci", environ=project_env(folder, store_db), **overrides)


@pytest.fixture
def make_settings(tmp_path, request):
    """Build settings under tmp_path; ``store`` is "sqlite", "postgres" (a fresh database) or a URL."""

    def _make(store: str = "sqlite", **overrides) -> Settings:
        if store == "postgres":
            store = _fresh_postgres_db(request.getfixturevalue("postgres_server"))
        return settings_in(tmp_path, None if store == "sqlite" else store, **overrides)

    return _make
