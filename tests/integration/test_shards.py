"""The sharded store (issue 12, points 1 and 2; docs/topology.md): a coordinator and 2 shard servers started by
scripts/store-shards.sh, the shared dataset seeded through the coordinator by `apparel seed`'s code unchanged, and
the pipeline run with bronze reading orders and order_details from each shard directly (APPAREL_STORE_SHARD_URLS).

What is checked, independently of the pipeline (psycopg on each shard, pandas over the dataset's files, and the
session's single-database run `shared_lake` of the same dataset and day):
- PostgreSQL routed every order and all its lines to one shard (hash of order_id), and the shards hold the files;
- silver and gold equal the single-database run's, whole and type-aware;
- bronze tags each row with its shard: per shard exactly the rows that shard holds, and `ops.ingest_runs.shard_rows`
  accounts for them; bronze without `_shard` equals the single-database run's bronze;
- an order id written to a second shard by hand fails the next run with a clear error, and nothing is written.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from apparel.catalog import TABLES, Catalog
from apparel.config import PROJECT_ROOT
from apparel.errors import ShardError
from apparel.pipeline import run_layers
from apparel.seed import seed_dataset
from conftest import SHARED_RUN_DATE, assert_same_rows, in_parallel, last_order_time, quiet, settings_in

pytestmark = [pytest.mark.slow]
SCRIPT = PROJECT_ROOT / "scripts" / "store-shards.sh"
LINEAGE = ["_ingested_at", "_source", "_batch_id", "_shard"]


def free_base_port() -> int:
    """A port p with p, p+1 and p+2 free (the coordinator and two shards)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base > 65000:
            continue
        try:
            for k in (1, 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
    raise RuntimeError("no three consecutive free ports")


@pytest.fixture(scope="module")
def shard_servers():
    # the servers run as the postgres user, who cannot enter pytest's private temporary folders
    folder = Path(f"/var/tmp/apparel-test-shards-{uuid.uuid4().hex[:8]}")
    env = os.environ | {"APPAREL_STORE_SHARDS": "2", "APPAREL_STORE_SHARDS_DIR": str(folder),
                        "APPAREL_STORE_SHARDS_PORT": str(free_base_port())}

    def script(*args: str) -> str:
        proc = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"store-shards.sh {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
        return proc.stdout.strip()

    try:
        coordinator = script("start").splitlines()[-1]
        yield {"coordinator": coordinator, "shards": script("shard-urls").split(),
               "read": script("read-urls").split(), "env": env}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def reader(url: str) -> str:
    return url.replace("://apparel@", "://apparel_reader@", 1)


def rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def sharded(spark, shard_servers, shared_dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded_lake")
    settings = settings_in(folder, store_db=shard_servers["coordinator"], live_now=last_order_time(shared_dataset),
                           store_shard_urls=" ".join(shard_servers["read"]))
    assert settings.store_read_db == reader(shard_servers["coordinator"])
    seed_dataset(settings, shared_dataset, log=quiet)
    logged: list[str] = []
    run_layers(spark, settings, ["bronze", "silver", "gold"], log=logged.append, run_date=SHARED_RUN_DATE)
    return {"settings": settings, "catalog": Catalog(settings), "log": logged}


def per_shard(shard_servers, sql: str) -> list[list[tuple]]:
    return [rows(url, sql) for url in shard_servers["shards"]]


def test_the_coordinator_routes_each_order_and_all_its_lines_to_one_shard(sharded, shard_servers, shared_dataset):
    orders = per_shard(shard_servers, "SELECT order_id FROM orders")
    lines = per_shard(shard_servers, "SELECT DISTINCT order_id FROM order_details WHERE order_id IS NOT NULL")
    source_orders = pd.read_csv(shared_dataset / "orders.csv")
    source_lines = pd.read_csv(shared_dataset / "order_details.csv")
    assert sum(len(o) for o in orders) == len(source_orders)
    n_lines = per_shard(shard_servers, "SELECT count(*) FROM order_details")
    assert sum(n[0][0] for n in n_lines) == len(source_lines)
    assert all(len(o) > len(source_orders) // 4 for o in orders)  # both shards hold a real share
    ids = [{r[0] for r in o} | {r[0] for r in ln} for o, ln in zip(orders, lines)]
    assert not ids[0] & ids[1]
    # the coordinator answers for the whole store, through its foreign partitions
    assert rows(shard_servers["coordinator"], "SELECT count(*) FROM orders")[0][0] == len(source_orders)


def test_services_env_points_the_pipeline_at_the_coordinator_and_the_shards(shard_servers):
    """`eval "$(bash scripts/services.sh env)"` (README) gives the settings the sharded run below uses."""
    proc = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "services.sh"), "env"], env=shard_servers["env"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    exported = dict(line.removeprefix("export ").split("=", 1) for line in proc.stdout.splitlines())
    unquote = {k: shlex.split(v)[0] if v else "" for k, v in exported.items()}
    assert unquote["APPAREL_STORE_DB"] == shard_servers["coordinator"]
    assert unquote["APPAREL_STORE_READ_DB"] == reader(shard_servers["coordinator"])
    assert unquote["APPAREL_STORE_SHARD_URLS"].split() == shard_servers["read"] == \
        [reader(url) for url in shard_servers["shards"]]


def test_silver_and_gold_equal_the_single_database_run(spark, sharded, shared_lake):
    ours, single = sharded["catalog"], Catalog(shared_lake.settings)
    names = sorted(n for n in TABLES if n.split(".")[0] in ("silver", "gold", "quarantine")
                   and single.exists(spark, n))
    assert len(names) >= 20
    in_parallel(names, lambda n: assert_same_rows(ours.read(spark, n), single.read(spark, n)))


def test_bronze_holds_each_shards_rows_tagged_with_it(spark, sharded, shard_servers, shared_lake):
    catalog = sharded["catalog"]
    for table in ("orders", "order_details"):
        held = per_shard(shard_servers, f"SELECT count(*) FROM {table}")
        landed = {r["_shard"]: r["count"] for r in catalog.read(spark, f"bronze.{table}").groupBy("_shard")
                  .count().collect()}
        assert landed == {"shard_1": held[0][0][0], "shard_2": held[1][0][0]}
        runs = catalog.read(spark, "ops.ingest_runs").where(f"`table` = '{table}'").collect()
        assert [dict(r["shard_rows"]) for r in runs] == [landed]
        assert runs[0]["rows_written"] == sum(landed.values())
        ours = catalog.read(spark, f"bronze.{table}").drop(*LINEAGE)
        single = Catalog(shared_lake.settings).read(spark, f"bronze.{table}")
        assert single.select("_shard").distinct().collect() == [(None,)]  # one database: no shard
        assert_same_rows(ours, single.drop(*LINEAGE))
    # a master table is read once, from the coordinator, and has no shard column
    assert "_shard" not in catalog.read(spark, "bronze.customers").columns
    assert any("no order id on two shards" in line for line in sharded["log"])


def test_an_order_id_on_two_shards_fails_the_run_and_writes_nothing(spark, sharded, shard_servers):
    catalog = sharded["catalog"]
    order_id, order_date = rows(shard_servers["shards"][0], "SELECT order_id, order_date FROM orders "
                                                            "ORDER BY order_id LIMIT 1")[0]
    before = {n: catalog.version(spark, n) for n in TABLES}
    with psycopg.connect(shard_servers["shards"][1]) as conn:  # around the coordinator, on the wrong shard
        conn.execute("INSERT INTO orders (order_id, order_date) VALUES (%s, %s)", (order_id, order_date))
    try:
        with pytest.raises(ShardError) as err:
            run_layers(spark, sharded["settings"], ["bronze", "silver", "gold"], log=quiet,
                       run_date=SHARED_RUN_DATE)
        assert f"order_id {order_id} on shard_1 and shard_2" in str(err.value)
        assert "1 order id(s) are on more than one shard" in str(err.value) and "nothing was written" in str(err.value)
        assert {n: catalog.version(spark, n) for n in TABLES} == before
    finally:
        with psycopg.connect(shard_servers["shards"][1]) as conn:
            conn.execute("DELETE FROM orders WHERE order_id = %s", (order_id,))
