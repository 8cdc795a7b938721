"""The lakehouse on the object store, read by Trino: the real SeaweedFS and the real Trino, started by the
project's own script (the `services` fixture), the shared dataset run through `apparel run` with an s3a://
lakehouse and landing area (each run killed at the next crash point of tests/crash_chain.py's S3_CHAIN, then one
run to the end, which must equal the uninterrupted run on local disk), then Trino's answers compared with Spark's
and with pandas over the source files."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlparse

import pytest
from pyspark.sql import functions as F

import expected_model as em
from apparel.catalog import TABLES, Catalog
from apparel.config import PROJECT_ROOT, load_settings
from apparel.objectstore import S3Location, client, credentials_file, remove_prefix
from apparel.pipeline import run_layers
from apparel.runlock import LOCK_PATH, RunLock
from apparel.runlog import last_runs
from apparel.seed import seed_dataset
from apparel.spark import apply_s3a
from apparel.trino_catalog import execute, register_tables, unregister_under
from conftest import SHARED_RUN_DATE, in_parallel, last_order_time, project_env
from crash_chain import S3_CHAIN, assert_every_kill_survived, assert_same_lakehouse, chain_layers, kill_chain
from run_lock_helpers import start_holder
from test_pipeline_shared import SILVER_GOLD

pytestmark = [pytest.mark.services, pytest.mark.slow]
TOTAL_REVENUE = 4_929_880_000


def run_env(tmp, bucket: str) -> dict[str, str]:
    """The environment of an `apparel` command on a lakehouse and landing area in ``bucket``."""
    return project_env(tmp) | {"APPAREL_ENV": "ci", "APPAREL_LAKEHOUSE": f"s3a://{bucket}/lakehouse",
                               "APPAREL_LANDING": f"s3a://{bucket}/landing", "TZ": "UTC"}


@pytest.fixture(scope="module")
def s3_lake(services, spark, shared_dataset, tmp_path_factory):
    """The shared dataset seeded (`apparel seed`) into an s3a:// landing area and run by `apparel run` into an
    s3a:// lakehouse in a bucket that does not exist yet, the crash tests' way (tests/crash_chain.py): each run
    killed with SIGKILL at the next crash point, then one run to the end; its output is the fixture's."""
    tmp = tmp_path_factory.mktemp("s3lake")
    bucket = f"apparel-test-{uuid.uuid4().hex[:8]}"
    env = run_env(tmp, bucket) | {"APPAREL_LIVE_NOW": last_order_time(shared_dataset)}
    settings = load_settings(environ=env)
    existed_before = client(settings).bucket_exists(bucket)
    seed_dataset(settings, shared_dataset, log=lambda _msg: None)
    apply_s3a(spark, settings)  # the session reads what the runs write
    kills, output = kill_chain(spark, settings, env, SHARED_RUN_DATE.isoformat(), tmp / "runs", "s3a",
                               chain=S3_CHAIN)
    yield {"settings": settings, "catalog": Catalog(settings), "bucket": bucket, "env": env, "tmp": tmp,
           "output": output, "existed_before": existed_before, "kills": kills,
           "facts": em.fact_lines(em.read_sources(shared_dataset))}
    unregister_under(settings, f"s3a://{bucket}/")
    remove_prefix(settings, f"s3a://{bucket}/")
    client(settings).remove_bucket(bucket)


def test_kills_on_the_object_store_leave_every_table_at_its_last_commit_and_bronze_without_a_duplicate(s3_lake):
    assert_every_kill_survived(s3_lake["kills"], "s3a", S3_CHAIN)


def test_the_run_after_the_kills_equals_an_uninterrupted_run_on_local_disk(spark, s3_lake, shared_lake):
    assert_same_lakehouse(spark, s3_lake["catalog"], Catalog(shared_lake.settings))


def trino_one(settings, sql: str):
    return execute(settings, sql)[1][0]


def test_the_run_created_its_bucket_and_registered_every_table(s3_lake):
    assert not s3_lake["existed_before"] and client(s3_lake["settings"]).bucket_exists(s3_lake["bucket"])
    # every Delta table the run wrote into the bucket (a `_delta_log` under lakehouse/<layer>/<table>) was
    # registered in Trino, and Trino lists them
    settings = s3_lake["settings"]
    lake = S3Location.parse(settings.lakehouse)
    written = {"/".join(o.object_name[len(lake.key) + 1:].split("/")[:2]).replace("/", ".")
               for o in client(settings).list_objects(lake.bucket, prefix=lake.key + "/", recursive=True)
               if "/_delta_log/" in o.object_name}
    assert {"bronze.orders", "silver.fct_order_lines", "gold.dm_sales_monthly", "ops.ingest_runs"} <= written
    registered = re.search(r"\[trino\] (\d+) table\(s\) registered in lakehouse: (.*)", s3_lake["output"])
    assert registered, s3_lake["output"]
    assert int(registered.group(1)) == len(written)
    assert {n.split(" (")[0] for n in registered.group(2).split(", ")} == written
    listed = execute(settings, "SELECT table_schema || '.' || table_name FROM lakehouse.information_schema.tables "
                               "WHERE table_schema IN ('bronze', 'silver', 'quarantine', 'gold', 'ops')")[1]
    assert written <= {r[0] for r in listed}
    # the workbooks went to the S3 landing area
    landing = S3Location.parse(s3_lake["settings"].landing)
    names = sorted(o.object_name.rsplit("/", 1)[1] for o in
                   client(s3_lake["settings"]).list_objects(landing.bucket, prefix=landing.key + "/"))
    assert names == ["cities.xlsx", "provinces.xlsx"]


def test_trino_revenue_equals_spark_and_the_source_files(spark, s3_lake):
    settings, catalog = s3_lake["settings"], s3_lake["catalog"]
    expected = int(s3_lake["facts"]["revenue"].sum())
    spark_total = catalog.read(spark, "gold.dm_sales_monthly").agg(F.sum("revenue")).collect()[0][0]
    (trino_total,) = trino_one(settings, "SELECT sum(revenue) FROM lakehouse.gold.dm_sales_monthly")
    assert trino_total == spark_total == expected == TOTAL_REVENUE


ROLE_KEYS = ("APPAREL_S3_ACCESS_KEY", "APPAREL_S3_SECRET_KEY", "APPAREL_TRINO_S3_ACCESS_KEY",
             "APPAREL_TRINO_S3_SECRET_KEY")


def role_keys(settings) -> dict[str, str]:
    """Each role's keys as scripts/services-lib.sh resolves them: the environment's, else the credentials file's."""
    found = {k: v for k, v in credentials_file(settings).items() if k in ROLE_KEYS}
    for pair in (ROLE_KEYS[:2], ROLE_KEYS[2:]):
        if all(os.environ.get(k) for k in pair):
            found.update({k: os.environ[k] for k in pair})
    return found


def minio_as(settings, access: str | None, secret: str | None):
    from minio import Minio

    return Minio(urlparse(settings.s3["endpoint"]).netloc, access_key=access, secret_key=secret, secure=False,
                 region=settings.s3["region"])


def denied(call) -> str:
    from minio.error import S3Error

    with pytest.raises(S3Error) as info:
        call()
    return info.value.code


def test_trinos_key_reads_the_lake_but_cannot_put_or_delete_in_it(s3_lake):
    """One identity per role on the native store (README "Least privilege"): Trino's key reads the lake, writes
    only under its metastore folder, and can neither put nor delete a lake object nor create a bucket; the
    pipeline's key creates no bucket outside the lake's pattern; an unsigned request is refused."""
    import requests

    settings, bucket = s3_lake["settings"], s3_lake["bucket"]
    keys = role_keys(settings)
    assert keys["APPAREL_TRINO_S3_ACCESS_KEY"] != keys["APPAREL_S3_ACCESS_KEY"]
    pipeline = client(settings)
    trino = minio_as(settings, keys["APPAREL_TRINO_S3_ACCESS_KEY"], keys["APPAREL_TRINO_S3_SECRET_KEY"])
    lake = S3Location.parse(settings.lakehouse).child("gold/dm_sales_monthly/_delta_log")
    name = sorted(o.object_name for o in pipeline.list_objects(bucket, prefix=lake.key + "/")
                  if o.object_name.endswith(".json"))[0]
    body = pipeline.get_object(bucket, name).read()
    assert trino.get_object(bucket, name).read() == body  # reads
    assert {o.object_name for o in trino.list_objects(bucket, prefix=lake.key + "/")} >= {name}  # lists
    assert denied(lambda: trino.put_object(bucket, name, io.BytesIO(b"{}"), 2)) == "AccessDenied"
    assert denied(lambda: trino.put_object(bucket, f"{lake.key}/99999999999999999999.json", io.BytesIO(b"{}"),
                                           2)) == "AccessDenied"
    assert denied(lambda: trino.remove_object(bucket, name)) == "AccessDenied"
    assert denied(lambda: trino.make_bucket(f"apparel-test-{uuid.uuid4().hex[:8]}")) == "AccessDenied"
    assert pipeline.get_object(bucket, name).read() == body  # still there, unchanged
    # its metastore folder is the one place it writes: the tables the run registered are there
    metastore = S3Location.parse(str(settings.trino["metastore_dir"]))
    assert any(trino.list_objects(metastore.bucket, prefix=metastore.key + "/", recursive=True))
    # the pipeline's key: no bucket outside s3.lake_buckets
    assert not str(settings.s3["lake_buckets"]).startswith("other")
    assert denied(lambda: pipeline.make_bucket(f"other-{uuid.uuid4().hex[:8]}")) == "AccessDenied"
    # no anonymous access: neither read nor write
    url = f"{settings.s3['endpoint']}/{bucket}/{name}"
    assert requests.get(url, timeout=30).status_code == 403
    assert requests.put(url, data=b"{}", timeout=30).status_code == 403
    assert requests.get(f"{settings.s3['endpoint']}/{bucket}?list-type=2", timeout=30).status_code == 403
    assert pipeline.get_object(bucket, name).read() == body


def test_every_silver_and_gold_table_has_spark_row_count_in_trino(spark, s3_lake):
    settings, catalog = s3_lake["settings"], s3_lake["catalog"]
    counts = in_parallel(SILVER_GOLD, lambda name: (trino_one(settings, f"SELECT count(*) FROM lakehouse.{name}")[0],
                                                    catalog.read(spark, name).count()))  # four tables at a time
    assert {n: t for n, (t, _) in counts.items()} == {n: s for n, (_, s) in counts.items()}
    assert all(t > 0 for t, _ in counts.values())
    assert counts["silver.fct_order_lines"][0] == len(s3_lake["facts"]) == 18322


def test_registration_is_idempotent_and_the_sql_command_prints_trino_results(s3_lake):
    assert register_tables(s3_lake["settings"], log=lambda m: None) == {}
    proc = subprocess.run([sys.executable, "-m", "apparel.cli", "sql",
                           "SELECT sum(revenue) AS revenue FROM gold.dm_sales_monthly"],
                          env=s3_lake["env"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["revenue", str(TOTAL_REVENUE), "(1", "row)"]


def test_trino_readers_never_see_a_partial_gold_rewrite(spark, s3_lake):
    """Trino queries in a loop while Spark rewrites every gold table (a full refresh: an incremental run with
    nothing new would write nothing): each answer is the whole table."""
    settings, catalog = s3_lake["settings"], s3_lake["catalog"]
    regions = catalog.read(spark, "gold.dm_region_monthly").agg(F.count(F.lit(1)), F.sum("revenue")).collect()[0]
    expected = (TOTAL_REVENUE, 12, int(regions[0]), int(regions[1]))
    sql = ("SELECT (SELECT sum(revenue) FROM gold.dm_sales_monthly), (SELECT count(*) FROM gold.dm_sales_monthly), "
           "(SELECT count(*) FROM gold.dm_region_monthly), (SELECT sum(revenue) FROM gold.dm_region_monthly)")
    before = {n: catalog.last_commit(spark, n)["version"] for n in ("gold.dm_sales_monthly", "gold.dm_region_monthly")}
    answers, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                answers.append((time.monotonic(), trino_one(settings, sql)))
            except Exception as exc:  # noqa: BLE001 - collected, the test fails on any
                errors.append(repr(exc))
            # a query every half second (the rewrite takes tens of seconds): back to back, the queries kept
            # Trino's two JVMs busy on the cores the rewrite they watch and the other pytest worker need
            stop.wait(0.5)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(1)
    started = time.monotonic()
    run_layers(spark, settings, ["gold"], log=lambda m: None, full_refresh=True)
    finished = time.monotonic()
    time.sleep(1)
    stop.set()
    thread.join(timeout=120)
    assert errors == []
    during = [a for t, a in answers if started <= t <= finished]
    assert len(during) >= 3, f"only {len(during)} queries overlapped the rewrite"
    assert {tuple(a) for _, a in answers} == {expected}
    # the rewrite did commit new versions, and Trino reads them at once
    for name, version in before.items():
        new = catalog.last_commit(spark, name)["version"]
        assert new > version
        table = TABLES[name].table
        assert trino_one(settings, f'SELECT max(version) FROM gold."{table}$history"') == (new,)


def test_wrong_credentials_fail_early_naming_the_endpoint(services, tmp_path):
    bucket = f"apparel-test-{uuid.uuid4().hex[:8]}"
    env = run_env(tmp_path, bucket) | {"APPAREL_S3_ACCESS_KEY": "nobody", "APPAREL_S3_SECRET_KEY": "wrong-secret"}
    settings = load_settings(environ=run_env(tmp_path, bucket))
    proc = subprocess.run([sys.executable, "-m", "apparel.cli", "run"], env=env, capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the object store at http://127.0.0.1:") and "rejected the credentials" in last
    assert settings.s3["endpoint"] in last
    # nothing was written: no bucket, no store database
    assert not client(settings).bucket_exists(bucket)
    assert not (tmp_path / "store.db").exists()


def test_an_unreachable_endpoint_is_a_one_line_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = run_env(tmp_path, "apparel-nowhere") | {"APPAREL_S3_ENDPOINT": f"http://127.0.0.1:{port}",
                                                  "APPAREL_S3_ACCESS_KEY": "k", "APPAREL_S3_SECRET_KEY": "s"}
    proc = subprocess.run([sys.executable, "-m", "apparel.cli", "seed"], env=env, capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: the object store at http://127.0.0.1:{port} is not reachable (MaxRetryError): start it with "
        "`make services-up`, or set APPAREL_S3_ENDPOINT")


def test_sql_errors_are_one_line(s3_lake):
    def sql(query: str, **env) -> str:
        proc = subprocess.run([sys.executable, "-m", "apparel.cli", "sql", query], env=s3_lake["env"] | env,
                              capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
        assert proc.returncode == 1
        return proc.stderr.strip()

    assert sql("SELECT * FROM gold.no_such_mart") == (
        "error: Trino TABLE_NOT_FOUND: line 1:15: Table 'lakehouse.gold.no_such_mart' does not exist")
    assert sql("SELECT 1", APPAREL_TRINO_URL="http://127.0.0.1:1") == (
        "error: Trino is not reachable at http://127.0.0.1:1: start it with `make services-up`, "
        "or set APPAREL_TRINO_URL")


def test_trino_script_refuses_a_jdk_older_than_24(tmp_path):
    env = dict(os.environ, APPAREL_SERVICES_DIR=str(tmp_path),
               APPAREL_TRINO_JAVA_HOME="/usr/lib/jvm/java-17-openjdk-amd64")
    proc = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "trino.sh"), "start"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert "APPAREL_TRINO_JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 is not a JDK 24+" in proc.stderr


def test_one_run_at_a_time_on_the_object_store(spark, s3_lake):
    settings, env = s3_lake["settings"], s3_lake["env"]
    # the fixture's runs are in the run log (the killed ones abandoned, the last one succeeded), and left no lock
    # behind
    runs = last_runs(spark, settings)
    assert {(r["command"], r["trigger"]) for r in runs} == {("run", "cli")}
    assert [r["status"] for r in runs] == ["succeeded"] + ["abandoned"] * len(S3_CHAIN)
    # newest first: the runs after the first one killed past bronze leave bronze out (crash_chain.chain_layers)
    assert [r["layers"] for r in runs] == [layers or "bronze,silver,gold" for layers in chain_layers(S3_CHAIN)][::-1]
    lake = S3Location.parse(settings.lakehouse)
    key = f"{lake.key}/{LOCK_PATH}"
    assert key not in {o.object_name for o in client(settings).list_objects(lake.bucket, prefix=lake.key + "/_apparel/",
                                                                           recursive=True)}
    holder = start_holder(env, "s3-holder")
    try:
        proc = subprocess.run([sys.executable, "-m", "apparel.cli", "maintain"], env=env, capture_output=True,
                              text=True, cwd=PROJECT_ROOT, timeout=300)
        assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: the lakehouse {settings.lakehouse} is in use by run s3-holder (test-holder, "
                               f"test, pid {holder.pid} on {socket.gethostname()}, since "), last
        assert last.endswith(f"one run at a time (lock {settings.lakehouse}/{LOCK_PATH}); wait for it to finish")
        assert len(last_runs(spark, settings)) == len(runs)  # the refused run wrote nothing
    finally:
        holder.kill()
        holder.wait()
    said: list[str] = []
    with RunLock(settings, "s3-taker", "run", "cli", log=said.append):
        held = json.loads(client(settings).get_object(lake.bucket, key).read())
        assert held["run_id"] == "s3-taker"
    assert len(said) == 1 and f"its process {holder.pid} is not running" in said[0], said
    with pytest.raises(Exception, match="NoSuchKey|does not exist"):
        client(settings).stat_object(lake.bucket, key)
