"""The tests' services scaled out (issue 12, points 4 and 6; docs/topology.md; stack_fixtures.SCALED_OUT): Trino as a
coordinator and a worker, and the object store replicated over two SeaweedFS volume servers. Read through them: the
gold marts of the shared dataset in a bucket, registered in Trino (the `gold_in_trino` fixture, which the dashboards
and notebooks tests read too)."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from apparel.catalog import Catalog
from apparel.config import PROJECT_ROOT
from apparel.objectstore import S3Location, client
from apparel.spark import apply_s3a
from apparel.trino_catalog import execute
from conftest import in_parallel
from stack_fixtures import SCALED_OUT

pytestmark = [pytest.mark.slow, pytest.mark.services]


def test_trino_runs_as_a_coordinator_and_a_worker_that_does_the_work(gold_in_trino):
    """Both nodes in system.runtime.nodes, and a query's tasks run on the worker only
    (node-scheduler.include-coordinator=false)."""
    settings = gold_in_trino["s3"]
    nodes = execute(settings, "SELECT node_id, coordinator, state FROM system.runtime.nodes ORDER BY node_id")[1]
    assert [tuple(n) for n in nodes] == [("apparel-local", True, "active"), ("apparel-worker-1", False, "active")]
    execute(settings, "SELECT count(*), sum(revenue) FROM lakehouse.gold.dm_sales_monthly")
    query_id = execute(settings, "SELECT query_id FROM system.runtime.queries WHERE state = 'FINISHED' AND "
                                 "query LIKE '%sum(revenue) FROM lakehouse.gold.dm_sales_monthly' "
                                 "ORDER BY created DESC LIMIT 1")[1][0][0]
    ran_on = execute(settings, f"SELECT DISTINCT node_id FROM system.runtime.tasks WHERE query_id = '{query_id}'")[1]
    assert [r[0] for r in ran_on] == ["apparel-worker-1"]


def objectstore(*args: str) -> None:
    proc = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "objectstore.sh"), *args], capture_output=True,
                          text=True, timeout=120, env=os.environ | SCALED_OUT)
    assert proc.returncode == 0, proc.stderr


def test_every_table_reads_with_either_volume_server_down(spark, gold_in_trino):
    """Replication 001 keeps every object on both volume servers. With one stopped, Spark reads every gold table's
    every column and Trino every table (a column of each file); then, the first back, with the other stopped: the
    same, so the first had every object still. Both back, writes work again."""
    settings = gold_in_trino["s3"]
    apply_s3a(spark, settings)
    catalog = Catalog(settings)
    names = gold_in_trino["tables"]

    def trino_rows(name: str) -> int:
        first = catalog.read(spark, name).columns[0]
        return execute(settings, f'SELECT count("{first}") + count(*) FROM lakehouse.{name}')[1][0][0]

    want = in_parallel(names, lambda n: digest(spark, gold_in_trino["catalog"], n))  # the local gold it came from
    assert in_parallel(names, lambda n: digest(spark, catalog, n)) == want
    want_trino = in_parallel(names, trino_rows)
    for down in ("2", "1"):
        objectstore("stop-volume", down)
        try:
            assert in_parallel(names, lambda n: digest(spark, catalog, n)) == want, f"volume server {down} down"
            assert in_parallel(names, trino_rows) == want_trino, f"volume server {down} down"
        finally:
            objectstore("start-volume", down)
    bucket = S3Location.parse(settings.lakehouse).bucket
    client(settings).put_object(bucket, "after-volume-restarts", io.BytesIO(b"ok"), 2)
    client(settings).remove_object(bucket, "after-volume-restarts")


def digest(spark, catalog: Catalog, name: str) -> tuple:
    """Rows and an order-independent hash of every column: reading it reads every data file whole."""
    df = catalog.read(spark, name)
    return tuple(df.agg(F.count(F.lit(1)), F.sum(F.xxhash64(*df.columns).cast("decimal(38,0)"))).collect()[0])


def test_a_pid_file_that_does_not_name_the_jvm_is_corrected_not_restarted(gold_in_trino):
    """scripts/trino.sh finds each node's JVM by its command line: a pid file naming another process (once seen in
    CI: the launcher's pid, not the JVM's) is rewritten, and `start` finds both nodes running instead of failing on
    their taken ports; `status` likewise for the coordinator."""
    trino_dir = PROJECT_ROOT / ".services" / "trino"
    worker, coordinator = trino_dir / "worker-1" / "trino.pid", trino_dir / "trino.pid"
    jvms = {f: int(f.read_text()) for f in (worker, coordinator)}
    for f in jvms:
        cmdline = (Path("/proc") / str(jvms[f]) / "cmdline").read_bytes().split(b"\0")
        assert f"-Dconfig={f.parent}/etc/config.properties".encode() in cmdline, f
    env = os.environ | SCALED_OUT
    with subprocess.Popen(["sleep", "60"]) as other:  # a live process that is no Trino node
        try:
            worker.write_text(f"{other.pid}\n")
            proc = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "trino.sh"), "start"], capture_output=True,
                                  text=True, timeout=300, env=env)
            assert proc.returncode == 0, proc.stderr
            assert f"worker-1: the pid file said {other.pid}, the JVM is {jvms[worker]}" in proc.stderr
            assert "starting" not in proc.stderr, proc.stderr
            coordinator.write_text(f"{other.pid}\n")
            proc = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "trino.sh"), "status"], capture_output=True,
                                  text=True, timeout=60, env=env)
            assert proc.returncode == 0 and "running" in proc.stderr, proc.stderr
        finally:
            other.kill()
    assert {f: int(f.read_text()) for f in jvms} == jvms
    assert execute(gold_in_trino["s3"], "SELECT count(*) FROM system.runtime.nodes")[1][0][0] == 2
