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
