"""The sharded store's layout statements (src/apparel/shards.py), without a server: what the coordinator is told
about each shard, and how the two fact tables are partitioned."""

from __future__ import annotations

from apparel.shards import coordinator_ddl, server_options

SHARDS = ["postgresql://apparel@127.0.0.1:55501/apparel", "postgresql://apparel@127.0.0.1:55502,127.0.0.1:55512/apparel"]


def test_a_shard_with_a_standby_is_reached_on_whichever_host_takes_writes():
    assert server_options(SHARDS[0]) == {"host": "127.0.0.1", "port": "55501", "dbname": "apparel"}
    assert server_options(SHARDS[1]) == {"host": "127.0.0.1,127.0.0.1", "port": "55502,55512", "dbname": "apparel",
                                         "target_session_attrs": "read-write"}


def test_orders_and_their_lines_are_partitioned_alike_over_every_shard():
    ddl = coordinator_ddl("apparel", SHARDS, existing_servers=set())
    assert "CREATE TABLE IF NOT EXISTS orders (order_id BIGINT, order_date TIMESTAMP, customer_id BIGINT, " \
           "province_id BIGINT, city_id BIGINT) PARTITION BY HASH (order_id)" in ddl
    parts = [s for s in ddl if s.startswith("CREATE FOREIGN TABLE")]
    assert len(parts) == 4
    for table in ("orders", "order_details"):
        for k in (0, 1):
            assert (f"CREATE FOREIGN TABLE IF NOT EXISTS {table}_shard_{k + 1} PARTITION OF {table} FOR VALUES WITH "
                    f"(MODULUS 2, REMAINDER {k}) SERVER shard_{k + 1} OPTIONS (table_name '{table}')") in parts
    # the tables belong to the store's owner (its default privileges give the read-only role SELECT)
    assert ddl.index("SET ROLE apparel") < ddl.index(parts[0]) and ddl[-1] == "RESET ROLE"


def test_a_known_shard_gets_its_hosts_updated_not_created_again():
    ddl = coordinator_ddl("apparel", SHARDS, existing_servers={"shard_2"})
    assert any(s.startswith("CREATE SERVER shard_1 ") for s in ddl)
    assert "ALTER SERVER shard_2 OPTIONS (SET host '127.0.0.1,127.0.0.1', SET port '55502,55512', " \
           "SET dbname 'apparel')" in ddl


def test_the_shards_setting_lists_urls_that_may_name_several_hosts():
    from apparel.config import load_settings

    settings = load_settings(env="ci", environ={"APPAREL_STORE_SHARD_URLS": f" {SHARDS[0]}\n {SHARDS[1]} "})
    assert settings.store_shard_urls == SHARDS
    assert load_settings(env="ci", environ={}).store_shard_urls == []


def test_one_shard_or_a_sqlite_shard_is_refused_before_spark(tmp_path):
    import pytest

    from apparel.config import load_settings
    from apparel.errors import ConfigError
    from apparel.jobs.bronze import BronzeIngest

    for urls, says in ((SHARDS[0], "names one shard"), (f"{SHARDS[0]} sqlite:///{tmp_path}/s.db", "PostgreSQL")):
        settings = load_settings(env="ci", environ={"APPAREL_STORE_SHARD_URLS": urls,
                                                    "APPAREL_LAKEHOUSE": str(tmp_path)})
        with pytest.raises(ConfigError, match=says):
            BronzeIngest(None, settings)


def test_a_shard_url_names_its_nodes_and_each_one_alone():
    from apparel.shards import hosts, single_host, writable

    url = "postgresql://apparel_reader@127.0.0.1:55502,127.0.0.1:55512/apparel?connect_timeout=3"
    assert hosts(url) == ["127.0.0.1:55502", "127.0.0.1:55512"]
    assert single_host(url, "127.0.0.1:55512") == "postgresql://apparel_reader@127.0.0.1:55512/apparel?connect_timeout=3"
    assert writable(url).endswith("?connect_timeout=3&target_session_attrs=read-write")
    assert writable(SHARDS[0]) == SHARDS[0]  # one host: nothing to choose


def test_wal_positions_compare_as_numbers():
    from apparel.shards import lsn

    assert lsn("0/3056B30") == 0x3056B30
    assert lsn("1/0") == 2**32 > lsn("0/FFFFFFFF")


def test_bronze_reads_a_standby_that_keeps_up_else_the_primary_with_the_reason():
    import psycopg
    import pytest

    from apparel.errors import SourceError
    from apparel.shards import pick_reader

    url = "postgresql://apparel_reader@127.0.0.1:1,127.0.0.1:2/apparel"

    def nodes(**state):
        """A probe answering for node 1 and node 2: (recovery, position, seconds since the last replay), or None
        when the node is down."""
        def probe(single):
            port = single.split("@127.0.0.1:")[1].split("/")[0]
            answer = state[f"n{port}"]
            if answer is None:
                raise psycopg.OperationalError("connection refused")
            return answer
        return probe

    caught_up = pick_reader("shard_1", url, 30, nodes(n1=(False, 500, None), n2=(True, 500, 400.0)))
    assert (caught_up.role, caught_up.node, caught_up.lag_seconds, caught_up.warning) == \
        ("standby", "127.0.0.1:2", 0.0, None)
    assert caught_up.url == "postgresql://apparel_reader@127.0.0.1:2/apparel"
    # behind the primary: the time since its last replayed transaction is its lag
    assert pick_reader("shard_1", url, 30, nodes(n1=(False, 900, None), n2=(True, 500, 12.0))).role == "standby"
    lagging = pick_reader("shard_1", url, 30, nodes(n1=(False, 900, None), n2=(True, 500, 45.0)))
    assert (lagging.role, lagging.node) == ("primary", "127.0.0.1:1")
    assert "standby 127.0.0.1:2 lags 45 s" in lagging.warning and "reading the primary 127.0.0.1:1" in lagging.warning
    down = pick_reader("shard_1", url, 30, nodes(n1=(False, 900, None), n2=None))
    assert down.role == "primary" and "node 127.0.0.1:2 is down (connection refused)" in down.warning
    # after a failover the standby is node 1
    promoted = pick_reader("shard_1", url, 30, nodes(n1=(True, 900, 0.5), n2=(False, 900, None)))
    assert (promoted.role, promoted.node) == ("standby", "127.0.0.1:1")
    with pytest.raises(SourceError, match="no node of 127.0.0.1:1, 127.0.0.1:2 takes writes"):
        pick_reader("shard_1", url, 30, nodes(n1=None, n2=(True, 900, 0.5)))


def test_change_data_capture_over_a_sharded_store_is_refused_before_anything_starts(tmp_path):
    """The capture reads one database's WAL and a coordinator's holds none of the shards' orders: with APPAREL_CDC
    on and shards set, preparing the store, registering the connector, starting the stream and the batch's choice
    of tables fail with one error naming both settings, before any connection (no server runs here)."""
    import os
    import subprocess
    import sys

    import pytest

    from apparel import cdc
    from apparel.config import PROJECT_ROOT, load_settings
    from apparel.errors import ConfigError
    from apparel.jobs.bronze import group_tables

    env = {"APPAREL_CDC": "1", "APPAREL_STORE_DB": "postgresql://apparel@127.0.0.1:1/apparel",
           "APPAREL_STORE_SHARD_URLS": " ".join(SHARDS), "APPAREL_LAKEHOUSE": str(tmp_path / "lake")}
    settings = load_settings(environ=env)
    for call in (cdc.prepare_source, cdc.register, lambda s: group_tables(s, None)):
        with pytest.raises(ConfigError, match="APPAREL_CDC.*APPAREL_STORE_SHARD_URLS"):
            call(settings)
    # unsharded, the same settings choose the batch's tables as before: the captured ones are left to the stream
    assert [t.name for t in group_tables(load_settings(environ=env | {"APPAREL_STORE_SHARD_URLS": ""}), None)] == \
        ["customers", "products", "product_categories", "provinces", "cities"]
    proc = subprocess.run([sys.executable, "-m", "apparel.cli", "stream", "start"], cwd=PROJECT_ROOT,
                          env=os.environ | env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "does not cover a sharded store" in proc.stderr.splitlines()[-1], proc.stderr
