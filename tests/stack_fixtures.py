"""Fixtures of the dashboards and notebooks tests (a pytest plugin of tests/conftest.py): the native object store,
Trino and Superset started by the project's own script (scripts/services.sh), and the gold marts of the shared
dataset registered in Trino."""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from pathlib import Path

import pytest

from apparel.config import PROJECT_ROOT, load_settings

SCRIPTS = PROJECT_ROOT / "scripts"
# The tests' services run scaled out (docs/topology.md): Trino as a coordinator that schedules nothing on itself
# and one worker, the object store replicated over two volume servers; so every object store, Trino and dashboard
# test runs on that layout. Both fixtures that start the services (`services`, `stack`) use it.
SCALED_OUT = {"APPAREL_TRINO_WORKERS": "1", "APPAREL_S3_VOLUME_SERVERS": "2"}


# The session fixtures of the object store, Trino and Superset, and of what lives in them. Their servers stop as
# soon as the last test that uses one of them has run, not when the worker's session ends: on CI that worker goes
# on with other modules for up to half an hour, with Trino, the object store and Superset idle beside them (Trino
# alone costs a few percent of a core doing nothing).
SERVICE_FIXTURES = {"services", "stack", "gold_in_bucket", "gold_in_trino"}


class EarlyTeardown:
    """The teardowns of SERVICE_FIXTURES, run once each, latest first: by the fixture after its ``yield`` (at the
    session's end), or all at once after the last test that uses a service fixture (``pytest_runtest_teardown``
    below), whichever comes first."""

    def __init__(self) -> None:
        self._pending: list = []

    def add(self, teardown):
        """``teardown`` registered; returns a function that runs it unless it ran already."""
        done = []

        def once():
            if not done:
                done.append(True)
                teardown()

        self._pending.append(once)
        return once

    def run(self) -> None:
        while self._pending:
            self._pending.pop()()


SERVICES_TEARDOWN = EarlyTeardown()


def _last_service_test(session) -> str | None:
    """The node id of the last test of the run that uses a service fixture (in the order the tests run in)."""
    if not hasattr(session, "_apparel_last_service_test"):
        users = [i.nodeid for i in session.items if SERVICE_FIXTURES & set(getattr(i, "fixturenames", ()))]
        session._apparel_last_service_test = users[-1] if users else None
    return session._apparel_last_service_test


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    if nextitem is not None and item.nodeid == _last_service_test(item.session):
        SERVICES_TEARDOWN.run()
    return result


def _script(name: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="session")
def stack():
    """Object store, Trino and Superset. Superset's secrets are random ones generated here unless it is already
    running (then the environment must hold the ones it was started with). Whatever this fixture started, it
    stops at the end."""
    superset_was_up = _script("superset.sh", "status", env=dict(os.environ)).returncode == 0
    others_were_up = _script("services.sh", "status", env=dict(os.environ)).returncode == 0
    env = dict(os.environ) | SCALED_OUT
    if superset_was_up:
        if not (env.get("SUPERSET_SECRET_KEY") and env.get("SUPERSET_ADMIN_PASSWORD")):
            pytest.fail("Superset is already running: export the SUPERSET_SECRET_KEY and SUPERSET_ADMIN_PASSWORD "
                        "it was started with, or stop it (scripts/superset.sh stop)")
    else:
        env["SUPERSET_SECRET_KEY"] = secrets.token_urlsafe(42)
        env["SUPERSET_ADMIN_PASSWORD"] = secrets.token_urlsafe(16)
    env["SUPERSET_VIEWER_USER"] = "viewer"
    env["SUPERSET_VIEWER_PASSWORD"] = secrets.token_urlsafe(16)
    proc = _script("services.sh", "up", env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"scripts/services.sh up failed:\n{proc.stderr}")
    if superset_was_up:  # the viewer's password is this run's
        proc = _script("superset.sh", "import", env=env)
        assert proc.returncode == 0, proc.stderr
    settings = load_settings(environ={k: v for k, v in env.items() if k != "APPAREL_ENV"} | {"APPAREL_ENV": "ci"})

    def stop():
        if not superset_was_up:
            _script("superset.sh", "stop", env=env)
        if not others_were_up:
            _script("services.sh", "down", env=env)

    stop = SERVICES_TEARDOWN.add(stop)
    yield {"env": env, "settings": settings, "url": str(settings.superset["url"]).rstrip("/"),
           "admin": (env.get("SUPERSET_ADMIN_USER") or "admin", env["SUPERSET_ADMIN_PASSWORD"]),
           "viewer": ("viewer", env["SUPERSET_VIEWER_PASSWORD"])}
    stop()


def _upload_tree(mc, folder: Path, bucket: str, prefix: str) -> int:
    n = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".crc")):
        mc.fput_object(bucket, f"{prefix}/{path.relative_to(folder).as_posix()}", str(path))
        n += 1
    return n


@pytest.fixture
def gold_in_trino(gold_in_bucket):
    """`gold_in_bucket`, registered in Trino as lakehouse.gold.* again if a test in between re-pointed or dropped
    those names (test_lakehouse_s3.py registers its own lakehouse's under them): each test reads this gold,
    whatever ran before it."""
    from apparel.trino_catalog import register_tables

    register_tables(gold_in_bucket["s3"], log=lambda m: None)
    return gold_in_bucket


@pytest.fixture(scope="session")
def gold_in_bucket(stack, shared_lake):
    """The shared dataset through bronze, silver and gold on local disk (the session's `shared_lake`, read-only,
    whose APPAREL_LIVE_NOW is the dataset's last order time, so gold.dm_sales_live holds its last two days), every
    gold table copied as it is (Delta files) into a fresh bucket, and registered in Trino as lakehouse.gold.*."""
    from apparel.catalog import TABLES, Catalog
    from apparel.objectstore import client, ensure_buckets, remove_prefix
    from apparel.trino_catalog import register_tables, unregister_under

    local = shared_lake.settings
    bucket = f"apparel-test-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in stack["env"].items() if k != "APPAREL_ENV"} | {
        "APPAREL_ENV": "ci", "APPAREL_LAKEHOUSE": f"s3a://{bucket}/lakehouse"}
    on_s3 = load_settings(environ=env)
    ensure_buckets(on_s3, log=lambda m: None)
    _upload_tree(client(on_s3), Path(local.lakehouse) / "gold", bucket, "lakehouse/gold")
    gold = sorted(n for n in TABLES if n.startswith("gold."))
    changed = register_tables(on_s3, log=lambda m: None)
    assert sorted(changed) == gold

    def drop():
        unregister_under(on_s3, f"s3a://{bucket}/")
        remove_prefix(on_s3, f"s3a://{bucket}/")
        client(on_s3).remove_bucket(bucket)

    drop = SERVICES_TEARDOWN.add(drop)
    yield {"local": local, "catalog": Catalog(local), "s3": on_s3, "tables": gold, "env": env}
    drop()
