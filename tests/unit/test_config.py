"""Settings: YAML layering, environment overrides, path resolution."""

import pytest

from apparel.config import PROJECT_ROOT, load_settings
from apparel.errors import ConfigError


def test_defaults_resolve_against_the_project_root():
    s = load_settings(env="local", environ={})
    assert s.lakehouse == str(PROJECT_ROOT / "lakehouse")
    assert s.store_db == f"sqlite:///{PROJECT_ROOT / 'var' / 'store.db'}"
    assert s.spark["master"] == "local[2]"


def test_environment_variables_override_yaml():
    s = load_settings(env="ci", environ={"APPAREL_LAKEHOUSE": "s3a://lake/house/", "APPAREL_SPARK_MASTER": "spark://h:7077",
                                         "APPAREL_STORE_DB": "postgresql://u:p@h:5433/d"})
    assert s.lakehouse == "s3a://lake/house"
    assert s.spark["master"] == "spark://h:7077"
    assert s.store_db == "postgresql://u:p@h:5433/d"
    assert s.jdbc["num_partitions"] == 2  # from ci.yaml


def test_unknown_environment_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown environment 'nope'"):
        load_settings(env="nope", environ={})


def test_store_url_redacts_password_and_builds_jdbc():
    from apparel.store import StoreDB

    db = StoreDB("postgresql://app:s3cret@db.example:5433/store")
    assert db.redacted == "postgresql://app:***@db.example:5433/store"
    assert db.jdbc_options() == {"url": "jdbc:postgresql://db.example:5433/store", "driver": "org.postgresql.Driver",
                                 "user": "app", "password": "s3cret"}


def test_bronze_and_maintenance_settings_are_typed_with_overrides():
    s = load_settings(env="ci", environ={})
    assert s.bronze.lookback_orders == 1000 and s.maintenance.retention_hours == 168
    s = load_settings(env="ci", environ={"APPAREL_BRONZE_LOOKBACK_ORDERS": "50",
                                         "APPAREL_MAINTENANCE_RETENTION_HOURS": "240"})
    assert s.bronze.lookback_orders == 50 and s.maintenance.retention_hours == 240
    with pytest.raises(ConfigError, match=r"bronze.lookback_orders \(APPAREL_BRONZE_LOOKBACK_ORDERS\) must be a "
                                          r"whole number, got 'many'"):
        load_settings(env="ci", environ={"APPAREL_BRONZE_LOOKBACK_ORDERS": "many"}).bronze
    with pytest.raises(ConfigError, match=r"must be 0 or more, got -1"):
        load_settings(env="ci", environ={"APPAREL_MAINTENANCE_RETENTION_HOURS": "-1"}).maintenance


def test_live_now_is_pinned_by_its_variable_else_the_current_utc_time():
    from datetime import datetime, timedelta, timezone

    pinned = load_settings(env="ci", environ={"APPAREL_LIVE_NOW": "2022-12-01T10:30:00"})
    assert pinned.live_now == datetime(2022, 12, 1, 10, 30)
    assert load_settings(env="ci", environ={"APPAREL_LIVE_NOW": "2022-12-01T10:30:00+07:00"}).live_now == \
        datetime(2022, 12, 1, 3, 30)
    now = load_settings(env="ci", environ={}).live_now
    assert now.tzinfo is None
    assert abs(now - datetime.now(timezone.utc).replace(tzinfo=None)) < timedelta(seconds=60)
    with pytest.raises(ConfigError, match=r"stream.live_now \(APPAREL_LIVE_NOW\) must be an ISO timestamp"):
        load_settings(env="ci", environ={"APPAREL_LIVE_NOW": "yesterday"}).live_now


def test_executor_jvm_flags_reach_a_clusters_executors_only():
    from apparel.spark import session_conf

    flags = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    on_cluster = load_settings(env="local", environ={"APPAREL_SPARK_MASTER": "spark://127.0.0.1:7077",
                                                     "APPAREL_SPARK_EXECUTOR_JAVA_OPTIONS": flags})
    conf = session_conf(on_cluster, ["/cache/a.jar"], cds="")
    # after base.yaml's own executor flags, and the driver keeps its own
    assert conf["spark.executor.extraJavaOptions"] == f"-Duser.timezone=UTC {flags}"
    assert flags not in conf["spark.driver.extraJavaOptions"]
    local = load_settings(env="local", environ={"APPAREL_SPARK_EXECUTOR_JAVA_OPTIONS": flags})
    assert session_conf(local, ["/cache/a.jar"], cds="")["spark.executor.extraJavaOptions"] == "-Duser.timezone=UTC"
