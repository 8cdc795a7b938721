"""`apparel maintain` on real Spark + Delta (the CLI's entry point in the session's Spark; spark_jobs/maintain.py
runs it in a JVM of its own in test_spark_submit.py): OPTIMIZE drops the file count, every table reads the same, time
travel within the retention still works, and a retention below Delta's minimum is a clear error unless the
session disables Delta's check (then VACUUM does delete the old files).

The lakehouse is a copy of the session's run of the small generated sample (`sample_lake`, every layer) with a
few batches appended. Expected values come from the rows the tests write and from the sample's files, never from
the job."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pandas as pd
import pytest
from pyspark.testing import assertDataFrameEqual

from apparel.catalog import TABLES, Catalog
from apparel.errors import ConfigError
from apparel.jobs.bronze import BronzeIngest, with_metadata
from apparel.jobs.maintain import RETENTION_CHECK, Maintenance, stored_files
from apparel.schemas import SOURCES
from apparel.store import StoreDB
from conftest import assert_same_rows, copy_lake, in_parallel, project_env, run_cli

APPENDS = 3


def quiet(_msg):
    pass


def num_files(spark, catalog, name) -> int:
    path = catalog.path(name)
    return spark.sql(f"DESCRIBE DETAIL delta.`{path}`").collect()[0]["numFiles"]


def frozen(spark, df):
    """A copy of a table's rows that no later commit or VACUUM can change."""
    return spark.createDataFrame(df.collect(), df.schema)


@pytest.fixture(scope="module")
def lake(spark, sample_lake, tmp_path_factory):
    """Every layer from the small generated sample (a copy of the session's `sample_lake`), then APPENDS small
    batches of new orders landed in bronze."""
    folder = tmp_path_factory.mktemp("maintain") / "lake"
    settings = copy_lake(sample_lake, folder)
    db = StoreDB(settings.store_db)
    top_order = db.query("SELECT max(order_id) FROM orders")[0][0]
    top_line = db.query("SELECT max(order_detail_id) FROM order_details")[0][0]
    for k in range(1, APPENDS + 1):
        oid = top_order + k
        db.insert_rows(SOURCES["orders"], [(oid, datetime(2026, 1, 1) + timedelta(days=k), 1, 1, 1)])
        db.insert_rows(SOURCES["order_details"], [(top_line + k, oid, 1, 1, 1000, 1000)])
        BronzeIngest(spark, settings, log=quiet).run(["store"])
    return folder, settings


def test_apparel_maintain_compacts_and_every_table_reads_the_same(spark, lake, sample):
    folder, settings = lake
    catalog = Catalog(settings)
    names = [n for n in sorted(TABLES) if catalog.exists(spark, n)]
    assert {"bronze.orders", "silver.fct_order_lines", "gold.dm_sales_monthly", "ops.ingest_runs"} <= set(names)
    files = in_parallel(names, lambda n: num_files(spark, catalog, n))
    versions = {n: catalog.version(spark, n) for n in names}  # from the Delta log: no Spark job
    # the first extraction plus one file per append
    assert files["bronze.orders"] >= 1 + APPENDS and files["ops.ingest_runs"] >= 1 + APPENDS

    # `apparel maintain` through the CLI's entry point, in the session's Spark (the command takes the active
    # session; test_spark_submit.py runs the maintenance job in a JVM of its own)
    rc, out, err = run_cli(project_env(folder) | {"APPAREL_ENV": "ci"}, "maintain")
    assert rc == 0, out + err[-3000:]
    assert "OPTIMIZE and VACUUM (retention 168 h)" in out, out
    lines = {}
    for n in names:  # one progress line per table: files before -> after, on storage, seconds
        m = re.search(rf"^\s*[\d.]+s\s+{re.escape(n)}\s+files\s+(\d+) -> (\d+)\s+on storage\s+(\d+) -> (\d+)\s+"
                      rf"\([\d.]+s\)(  nothing to vacuum)?$", out, re.M)
        assert m, f"no progress line for {n}:\n{out}"
        assert int(m.group(1)) == files[n], (n, m.group(0))
        lines[n] = m
    # VACUUM is left out where it could delete nothing: a mart the one run wrote once (one version, so every file
    # on storage is in it); bronze.orders had its appends compacted away, so VACUUM ran (and, within the
    # retention, kept them)
    assert versions["gold.dm_sales_monthly"] == 0 and lines["gold.dm_sales_monthly"].group(5)
    assert not lines["bronze.orders"].group(5)
    assert int(lines["bronze.orders"].group(4)) == files["bronze.orders"] + 1  # the appends' and the compacted one

    after = in_parallel(names, lambda n: num_files(spark, catalog, n))
    # appends of small files compact into one file (neither table is partitioned)
    assert after["bronze.orders"] == 1 < files["bronze.orders"]
    assert after["ops.ingest_runs"] == 1 < files["ops.ingest_runs"]
    assert all(after[n] <= files[n] for n in names), {n: (files[n], after[n]) for n in names}
    # one OPTIMIZE commit where files were compacted, none elsewhere (VACUUM writes no commit)
    assert {n: catalog.version(spark, n) - versions[n] for n in names} == \
        {n: int(after[n] < files[n]) for n in names}
    # every table reads as it did before: the same schema and rows as its version before maintenance, read by time
    # travel (within the retention, so VACUUM must have kept that version's files too)
    in_parallel(names, lambda n: assert_same_rows(catalog.read(spark, n), spark.read.format("delta").option(
        "versionAsOf", versions[n]).load(catalog.path(n))))

    # time travel within the retention: the first extraction of the orders is readable as it was
    seeded = pd.read_csv(sample / "orders.csv")
    v0 = spark.read.format("delta").option("versionAsOf", 0).load(catalog.path("bronze.orders"))
    assert v0.count() == len(seeded)
    assert sorted(r[0] for r in v0.select("order_id").collect()) == sorted(seeded.order_id.tolist())


@pytest.fixture
def small_table(spark, make_settings):
    """bronze.orders written in three appends of two literal rows each, one file per append."""
    settings = make_settings("sqlite")
    catalog = Catalog(settings)
    ddl = SOURCES["orders"].spark_ddl()
    batches = [[(3 * b + i, datetime(2026, 2, 1 + b), 10 + i, 1, 1) for i in (1, 2)] for b in range(3)]
    for b, rows in enumerate(batches):
        catalog.append(with_metadata(spark.createDataFrame(rows, ddl).coalesce(1), "store_db.orders", f"b{b}",
                                     datetime(2026, 2, 1 + b)), "bronze.orders")
    return settings, catalog, batches


def test_retention_below_168_hours_is_a_clear_error_and_touches_nothing(spark, small_table):
    settings, catalog, _ = small_table
    version = catalog.last_commit(spark, "bronze.orders")["version"]
    assert spark.conf.get(RETENTION_CHECK, "true") != "false"
    with pytest.raises(ConfigError, match=r"maintenance retention 1 h is below Delta's minimum of 168 h: .* "
                                          r"spark.databricks.delta.retentionDurationCheck.enabled=false"):
        Maintenance(spark, settings, log=quiet, retention_hours=1).run()
    assert catalog.last_commit(spark, "bronze.orders")["version"] == version
    assert num_files(spark, catalog, "bronze.orders") == 3


def test_vacuum_deletes_old_files_when_the_check_is_disabled(spark, small_table):
    """Retention 0 (tests only): the compacted-away files leave storage, the table reads the same, and the
    versions before OPTIMIZE are no longer readable: they were outside the retention."""
    settings, catalog, batches = small_table
    path = catalog.path("bronze.orders")
    current = frozen(spark, catalog.read(spark, "bronze.orders"))
    assert stored_files(spark, path) == 3
    spark.conf.set(RETENTION_CHECK, "false")
    try:
        [res] = Maintenance(spark, settings, log=quiet, retention_hours=0).run(["bronze.orders"])
    finally:
        spark.conf.unset(RETENTION_CHECK)
    assert (res.files_before, res.files_after, res.stored_before, res.stored_after) == (3, 1, 4, 1)
    assert catalog.last_commit(spark, "bronze.orders")["version"] == 3  # appends 0-2, OPTIMIZE 3, no VACUUM
    assert stored_files(spark, path) == 1
    assertDataFrameEqual(catalog.read(spark, "bronze.orders"), current)
    assert catalog.read(spark, "bronze.orders").count() == sum(len(b) for b in batches)
    with pytest.raises(Exception, match=r"(?i)FileNotFound|does not exist|DELTA_FILE_NOT_FOUND|not found"):
        spark.read.format("delta").option("versionAsOf", 0).load(path).collect()
