"""Crash safety on local disk: `apparel run` over the shared dataset, killed with SIGKILL at each crash point of
tests/crash_chain.py (bronze during extraction, during a commit and between commits; silver and gold during a
commit and between commits), each kill on what the one before left, then one run to the end. After every kill the
tables read at their last commit and bronze holds nothing twice; the finished lakehouse equals the session's
uninterrupted run of the same dataset and day (`shared_lake`), table by table, type-aware. The same chain on
s3a:// builds test_lakehouse_s3.py's lakehouse."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from apparel.catalog import Catalog
from apparel.config import load_settings
from apparel.seed import seed_dataset
from conftest import SHARED_RUN_DATE, last_order_time, project_env, settings_in
from crash_chain import CHAIN, assert_every_kill_survived, assert_same_lakehouse, kill_chain

pytestmark = [pytest.mark.slow]


def quiet(_msg):
    pass


@pytest.fixture(scope="module")
def crashed(spark, shared_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("crash_local")
    env = project_env(root) | {"APPAREL_ENV": "ci", "APPAREL_LIVE_NOW": last_order_time(shared_dataset),
                               "TZ": "UTC"}
    settings = load_settings(environ=env)
    seed_dataset(settings, shared_dataset, log=quiet)
    kills, output = kill_chain(spark, settings, env, SHARED_RUN_DATE.isoformat(), root / "runs", "local")
    return {"settings": settings, "catalog": Catalog(settings), "kills": kills, "output": output}


def test_each_kill_leaves_every_table_at_its_last_commit_and_bronze_without_a_duplicate(crashed):
    assert_every_kill_survived(crashed["kills"], "local")


def test_the_run_after_the_kills_equals_an_uninterrupted_run(spark, crashed, shared_lake):
    assert_same_lakehouse(spark, crashed["catalog"], Catalog(shared_lake.settings))


def test_the_killed_runs_are_logged_as_abandoned(spark, crashed):
    runs = crashed["catalog"].read(spark, "ops.run_log").groupBy("status").agg(F.count(F.lit(1)).alias("n"))
    assert {r["status"]: r["n"] for r in runs.collect()} == {"abandoned": len(CHAIN), "succeeded": 1}


def test_a_table_first_seen_with_an_empty_log_exists_once_another_process_commits_it(spark, tmp_path):
    """A killed first commit can leave an empty `_delta_log`; the table another run then commits must exist for a
    session that looked at the folder before (Delta's own isDeltaTable keeps answering False from its cache)."""
    import shutil

    catalog = Catalog(settings_in(tmp_path))
    path = catalog.path("bronze.provinces")
    (tmp_path / "lakehouse" / "bronze" / "provinces" / "_delta_log").mkdir(parents=True)
    assert not catalog.exists(spark, "bronze.provinces") and catalog.version(spark, "bronze.provinces") is None
    spark.range(3).write.format("delta").save(str(tmp_path / "elsewhere"))
    shutil.rmtree(path)
    shutil.copytree(tmp_path / "elsewhere", path)  # committed behind this session's back, as by another process
    assert catalog.exists(spark, "bronze.provinces") and catalog.version(spark, "bronze.provinces") == 0
    assert catalog.read(spark, "bronze.provinces").count() == 3
