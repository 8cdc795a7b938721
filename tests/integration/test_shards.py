"""The sharded and replicated store (issue 12, points 1 to 3; docs/topology.md): a coordinator and 2 shards, each
a primary with a hot standby under pg_auto_failover, started by scripts/store-shards.sh (APPAREL_STORE_STANDBYS=1);
the shared dataset seeded through the coordinator by `apparel seed`'s code unchanged, and the pipeline run with
bronze reading orders and order_details from each shard's standby directly (APPAREL_STORE_SHARD_URLS).

What is checked, independently of the pipeline (psycopg on each shard, pandas over the dataset's files, and the
independent pandas model of the marts over the dataset's files, tests/expected_model.py):
- PostgreSQL routed every order and all its lines to one shard (hash of order_id), and the shards hold the files;
- every gold mart equals the model (as one database's run does in test_pipeline_shared.py), type-aware;
- bronze tags each row with its shard: per shard exactly the rows that shard holds, and `ops.ingest_runs.shard_rows`
  accounts for them; bronze holds the files' rows with their columns;
- a standby stopped: bronze reads that shard's primary, warns, and lands the same rows;
- a primary killed (SIGKILL to its keeper and PostgreSQL): its standby is promoted, writes through the coordinator
  work again (the time from the kill to the first write is printed), the next run lands and builds exactly the new
  orders, and the old primary rejoins as a standby;
- an order id written to a second shard by hand fails the next run with a clear error, and nothing is written.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pandas as pd
import psycopg
import pytest

import expected_model as em
from apparel.catalog import TABLES, Catalog
from apparel.config import PROJECT_ROOT
from apparel.errors import ShardError
from apparel.pipeline import run_layers
from apparel.seed import seed_dataset
from apparel.shards import free_base_port, writable
from conftest import SHARED_RUN_DATE, last_order_time, quiet, settings_in

pytestmark = [pytest.mark.slow]
SCRIPT = PROJECT_ROOT / "scripts" / "store-shards.sh"
LINEAGE = ["_ingested_at", "_source", "_batch_id", "_shard"]




@pytest.fixture(scope="module")
def shard_servers():
    # the servers run as the postgres user, who cannot enter pytest's private temporary folders
    folder = Path(f"/var/tmp/apparel-test-shards-{uuid.uuid4().hex[:8]}")
    env = os.environ | {"APPAREL_STORE_SHARDS": "2", "APPAREL_STORE_STANDBYS": "1",
                        "APPAREL_STORE_SHARDS_DIR": str(folder), "APPAREL_STORE_SHARDS_PORT": str(free_base_port()),
                        "APPAREL_STORE_FAILOVER_TIMEOUT_MS": "5000"}

    def script(*args: str) -> str:
        proc = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"store-shards.sh {' '.join(args)} failed:\n{proc.stderr[-3000:]}"
        return proc.stdout.strip()

    try:
        coordinator = script("start").splitlines()[-1]
        yield {"coordinator": coordinator, "shards": script("shard-urls").split(),
               "read": script("read-urls").split(), "env": env, "script": script}
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


MARTS = {  # gold mart: its independent pandas model over the dataset's files (tests/expected_model.py)
    "dm_sales_monthly": lambda f, src: em.sales_monthly(f),
    "dm_product_ranking": em.product_ranking,
    "dm_region_monthly": em.region_monthly,
    "dm_basket_pairs": em.basket_pairs,
    "dm_product_monthly": em.product_monthly,
    "dm_category_gender_monthly": em.category_gender_monthly,
    "dm_customer_rfm": em.customer_rfm,
    "dm_customer_cohorts": lambda f, src: em.customer_cohorts(f),
}


def test_gold_equals_the_model_of_the_files(spark, sharded, shared_dataset):
    """What one database gives (tests/integration/test_pipeline_shared.py checks the same marts against the same
    model): every mart, type-aware."""
    src = em.read_sources(shared_dataset)
    facts = em.fact_lines(src)
    for mart, model in MARTS.items():
        em.assert_same(sharded["catalog"].read(spark, f"gold.{mart}"), model(facts, src))


def test_bronze_holds_each_shards_rows_tagged_with_it(spark, sharded, shard_servers, shared_dataset):
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
        files = pd.read_csv(shared_dataset / f"{table}.csv")
        assert ours.count() == len(files) and ours.columns == list(files.columns)
    # a master table is read once, from the coordinator, and has no shard column
    assert "_shard" not in catalog.read(spark, "bronze.customers").columns
    assert any("no order id on two shards" in line for line in sharded["log"])
    # each shard read from its standby (within bronze.standby_max_lag_seconds of its primary)
    for k in (1, 2):
        assert any(line.startswith(f"[bronze] shard_{k}: reading the standby 127.0.0.1:{port(shard_servers, k, 1)}, ")
                   for line in sharded["log"]), sharded["log"][:12]


def port(servers, shard: int, node: int) -> int:
    return int(servers["env"]["APPAREL_STORE_SHARDS_PORT"]) + shard + 10 * node


def state(servers, shard: int) -> dict[str, str]:
    """{node name: reported state} of one shard, as the monitor sees it."""
    lines = [line.split("|") for line in servers["script"]("state").splitlines() if "|" in line]
    return {cells[0].strip(): cells[5].strip() for cells in lines if cells[0].strip().startswith(f"shard_{shard}_")}


def test_a_stopped_standby_sends_bronze_to_its_primary_with_a_warning(spark, sharded, shard_servers):
    catalog = sharded["catalog"]
    before = {t: catalog.version(spark, f"bronze.{t}") for t in ("orders", "order_details")}
    shard_servers["script"]("stop-node", "1", "1")
    try:
        logged: list[str] = []
        summary = run_layers(spark, sharded["settings"], ["bronze"], log=logged.append)
        warning = next(w for w in summary["bronze_warnings"] if w.startswith("shard_1:"))
        assert f"node 127.0.0.1:{port(shard_servers, 1, 1)} is down" in warning
        assert f"reading the primary 127.0.0.1:{port(shard_servers, 1, 0)}" in warning
        assert any(line.startswith(f"[bronze] shard_2: reading the standby 127.0.0.1:{port(shard_servers, 2, 1)}, ")
                   for line in logged)
        # the same rows: nothing new to land, and every row accounted for against the primary
        assert summary["bronze"]["orders"] == summary["bronze"]["order_details"] == 0
        assert {t: catalog.version(spark, f"bronze.{t}") for t in ("orders", "order_details")} == before
    finally:
        shard_servers["script"]("start-node", "1", "1")
    deadline = time.monotonic() + 120
    while state(shard_servers, 1).get("shard_1_node_1") != "secondary":
        assert time.monotonic() < deadline, state(shard_servers, 1)
        time.sleep(1)


def test_a_killed_primary_is_replaced_by_its_standby_and_the_next_run_is_right(spark, sharded, shard_servers):
    from apparel.schemas import SOURCES

    coordinator, catalog = shard_servers["coordinator"], sharded["catalog"]
    facts_before = {f: catalog.count(spark, f) for f in ("silver.fct_orders", "silver.fct_order_lines")}
    killed = time.monotonic()
    shard_servers["script"]("stop-node", "2", "0", "--immediate")
    # new orders (copies of the first five, new ids) written through the coordinator, as soon as it can
    orders, lines = (", ".join(c.name for c in SOURCES[t].columns) for t in ("orders", "order_details"))
    copy_orders = (f"INSERT INTO orders ({orders}) SELECT {orders.replace('order_id', 'order_id + 1000000', 1)} "
                   "FROM orders WHERE order_id <= 5")
    copy_lines = (f"INSERT INTO order_details ({lines}) SELECT {lines.replace(', order_id', ', order_id + 1000000')} "
                  "FROM order_details WHERE order_id <= 5")
    while True:
        try:
            with psycopg.connect(coordinator, connect_timeout=3) as conn:
                new_orders = conn.execute(copy_orders).rowcount
                new_lines = conn.execute(copy_lines).rowcount
            break
        except psycopg.Error:
            assert time.monotonic() - killed < 180, "no write went through within 180 s of the kill"
            time.sleep(0.5)
    print(f"[shards] shard_2's primary killed: the first write through the coordinator after "
          f"{time.monotonic() - killed:.1f} s")
    assert new_orders == 5 and new_lines > 5
    assert state(shard_servers, 2)["shard_2_node_1"] in ("wait_primary", "primary")
    # the old primary comes back as a standby of the new one
    shard_servers["script"]("start-node", "2", "0")
    deadline = time.monotonic() + 120
    while state(shard_servers, 2).get("shard_2_node_0") != "secondary":
        assert time.monotonic() < deadline, state(shard_servers, 2)
        time.sleep(1)
    logged: list[str] = []
    summary = run_layers(spark, sharded["settings"], ["bronze", "silver", "gold"], log=logged.append,
                         run_date=SHARED_RUN_DATE)
    assert summary["bronze"]["orders"] == new_orders and summary["bronze"]["order_details"] == new_lines
    for table in ("orders", "order_details"):
        held = per_shard(shard_servers, f"SELECT count(*) FROM {table}")
        landed = {r["_shard"]: r["count"] for r in catalog.read(spark, f"bronze.{table}").groupBy("_shard")
                  .count().collect()}
        assert landed == {"shard_1": held[0][0][0], "shard_2": held[1][0][0]}
    for fact, added in (("silver.fct_orders", new_orders), ("silver.fct_order_lines", new_lines)):
        assert catalog.count(spark, fact) == facts_before[fact] + added


def test_an_order_id_on_two_shards_fails_the_run_and_writes_nothing(spark, sharded, shard_servers):
    catalog = sharded["catalog"]
    order_id, order_date = rows(writable(shard_servers["shards"][0]), "SELECT order_id, order_date FROM orders "
                                                                      "ORDER BY order_id LIMIT 1")[0]
    before = {n: catalog.version(spark, n) for n in TABLES}
    wrong = writable(shard_servers["shards"][1])  # around the coordinator, on the wrong shard's primary
    with psycopg.connect(wrong) as conn:
        conn.execute("INSERT INTO orders (order_id, order_date) VALUES (%s, %s)", (order_id, order_date))
    try:
        with pytest.raises(ShardError) as err:
            run_layers(spark, sharded["settings"], ["bronze", "silver", "gold"], log=quiet,
                       run_date=SHARED_RUN_DATE)
        assert f"order_id {order_id} on shard_1 and shard_2" in str(err.value)
        assert "1 order id(s) are on more than one shard" in str(err.value) and "nothing was written" in str(err.value)
        assert {n: catalog.version(spark, n) for n in TABLES} == before
    finally:
        with psycopg.connect(wrong) as conn:
            conn.execute("DELETE FROM orders WHERE order_id = %s", (order_id,))
