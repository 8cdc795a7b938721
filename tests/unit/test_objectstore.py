"""Object store settings, S3A configuration and jar selection (no server needed: pure functions)."""

import xml.etree.ElementTree as ET

import pytest

from apparel.config import load_settings
from apparel.errors import ConfigError
from apparel.jars import PROVIDED_ORGS, _ivy_xml, packages_for
from apparel.objectstore import S3Location, credentials, project_buckets
from apparel.services import s3_identities, service_env
from apparel.spark import session_conf

KEYS = {"APPAREL_S3_ACCESS_KEY": "AK", "APPAREL_S3_SECRET_KEY": "SK"}


def test_a_named_hadoop_module_resolves_but_no_transitive_one():
    root = ET.fromstring(_ivy_xml(["org.apache.hadoop:hadoop-aws:3.5.0", "io.delta:delta-spark_4.2_2.13:4.4.0"]))
    excluded = {d.get("name"): {e.get("org") for e in d.findall("exclude")} for d in root.iter("dependency")}
    assert excluded == {"hadoop-aws": set(PROVIDED_ORGS) - {"org.apache.hadoop"},
                        "delta-spark_4.2_2.13": set(PROVIDED_ORGS)}
    assert root.find("dependencies/exclude") is None  # no global exclude: it would drop hadoop-aws itself


def test_s3a_jars_only_when_the_lakehouse_is_on_s3_or_ci_asks_for_them():
    local = packages_for(load_settings(env="local", environ={}))
    on_s3 = packages_for(load_settings(env="local", environ={"APPAREL_LAKEHOUSE": "s3a://lake/house"}))
    ci = packages_for(load_settings(env="ci", environ={}))
    s3 = ["org.apache.hadoop:hadoop-aws:3.5.0", "software.amazon.awssdk:bundle:2.35.4"]
    assert not set(s3) & set(local)
    assert on_s3 == ci == local + s3


def test_session_conf_points_s3a_at_the_configured_store():
    env = KEYS | {"APPAREL_LAKEHOUSE": "s3a://lake/house", "APPAREL_S3_ENDPOINT": "https://s3.example.net",
                  "APPAREL_S3_REGION": "eu-west-1", "APPAREL_S3_PATH_STYLE": "false"}
    conf = session_conf(load_settings(env="local", environ=env), [])
    s3a = {k.removeprefix("spark.hadoop."): v for k, v in conf.items() if k.startswith("spark.hadoop.fs.s3a.")}
    assert {k: s3a[k] for k in ["fs.s3a.endpoint", "fs.s3a.endpoint.region", "fs.s3a.path.style.access",
                                "fs.s3a.connection.ssl.enabled", "fs.s3a.access.key", "fs.s3a.secret.key"]} == {
        "fs.s3a.endpoint": "https://s3.example.net", "fs.s3a.endpoint.region": "eu-west-1",
        "fs.s3a.path.style.access": "false", "fs.s3a.connection.ssl.enabled": "true",
        "fs.s3a.access.key": "AK", "fs.s3a.secret.key": "SK"}
    assert not [k for k in session_conf(load_settings(env="local", environ=KEYS), []) if "s3a" in k]


def test_credentials_come_from_the_environment_else_the_services_file(tmp_path):
    file = tmp_path / "credentials.env"
    file.write_text("# generated\nAPPAREL_S3_ACCESS_KEY=apparel-1234\nAPPAREL_S3_SECRET_KEY='s3cr3t'\n")
    from_file = load_settings(env="local", environ={"APPAREL_S3_CREDENTIALS_FILE": str(file)})
    assert credentials(from_file) == ("apparel-1234", "s3cr3t")
    both = load_settings(env="local", environ=KEYS | {"APPAREL_S3_CREDENTIALS_FILE": str(file)})
    assert credentials(both) == ("AK", "SK")
    none = load_settings(env="local", environ={"APPAREL_S3_CREDENTIALS_FILE": str(tmp_path / "absent.env")})
    with pytest.raises(ConfigError, match=r"no object store credentials for http://127.0.0.1:9000: set APPAREL_S3_"):
        credentials(none)


def test_s3_uris_parse_into_bucket_and_key():
    assert S3Location.parse("s3a://lake/house/") == S3Location("lake", "house")
    assert S3Location.parse("s3a://lake/house").child("gold/dm_x").uri("s3") == "s3://lake/house/gold/dm_x"
    assert S3Location.parse("s3://lake").child("a").uri() == "s3a://lake/a"
    with pytest.raises(ConfigError, match="is not an s3a://bucket/prefix URI"):
        S3Location.parse("/local/path")


def test_the_project_buckets_are_those_its_settings_name():
    both = {"APPAREL_LAKEHOUSE": "s3a://lake/x", "APPAREL_LANDING": "s3a://land/y",
            "APPAREL_TRINO_METASTORE_DIR": "s3://meta/z"}
    assert project_buckets(load_settings(env="local", environ=both)) == ["lake", "land", "meta"]
    # Trino only reads an S3 lakehouse: a local lakehouse needs no metastore bucket
    assert project_buckets(load_settings(env="local", environ={"APPAREL_LANDING": "s3a://land/y"})) == ["land"]
    assert project_buckets(load_settings(env="local", environ={})) == []
    assert project_buckets(load_settings(env="local", environ=both | {"APPAREL_TRINO_URL": "off"})) == ["lake", "land"]


def test_the_service_scripts_get_the_resolved_settings():
    env = service_env(load_settings(env="local", environ={"APPAREL_S3_ENDPOINT": "http://localhost:9100",
                                                          "APPAREL_TRINO_URL": "http://127.0.0.1:8111"}))
    assert env["APPAREL_S3_ENDPOINT"] == "http://localhost:9100"
    assert env["APPAREL_TRINO_URL"] == "http://127.0.0.1:8111"
    assert env["APPAREL_S3_PATH_STYLE"] == "true"
    assert env["APPAREL_S3_CREDENTIALS_FILE"].endswith("/.services/credentials.env")
    assert not [k for k in env if "SECRET" in k or "ACCESS_KEY" in k]


ROLES = {"APPAREL_S3_ACCESS_KEY": "pipe", "APPAREL_S3_SECRET_KEY": "pipe-secret",
         "APPAREL_TRINO_S3_ACCESS_KEY": "trino", "APPAREL_TRINO_S3_SECRET_KEY": "trino-secret"}


def test_the_native_store_has_one_identity_per_role_and_none_anonymous():
    settings = load_settings(env="local", environ={"APPAREL_S3_LAKE_BUCKETS": "lake-*",
                                                    "APPAREL_TRINO_METASTORE_DIR": "s3://lake-meta/_trino/"})
    ids = {i["name"]: i for i in s3_identities(settings, ROLES)["identities"]}
    assert set(ids) == {"pipeline", "trino"}  # no "anonymous": unsigned requests are refused
    assert ids["pipeline"]["credentials"] == [{"accessKey": "pipe", "secretKey": "pipe-secret"}]
    assert ids["trino"]["credentials"] == [{"accessKey": "trino", "secretKey": "trino-secret"}]
    # the pipeline owns the lake's buckets and nothing else; Trino reads them and writes its metastore folder
    assert ids["pipeline"]["actions"] == ["Admin:lake-*"]
    assert ids["trino"]["actions"] == ["Read:lake-*", "List:lake-*", "Write:lake-meta/_trino/*"]


@pytest.mark.parametrize("pattern", ["*", "", "lake/*"])
def test_a_pattern_that_names_no_bucket_is_refused(pattern):
    settings = load_settings(env="local", environ={}, s3__lake_buckets=pattern)
    with pytest.raises(ConfigError, match="APPAREL_S3_LAKE_BUCKETS"):
        s3_identities(settings, ROLES)


def test_trino_needs_its_own_key():
    settings = load_settings(env="local", environ={})
    with pytest.raises(ConfigError, match="must differ"):
        s3_identities(settings, ROLES | {"APPAREL_TRINO_S3_ACCESS_KEY": "pipe"})
    with pytest.raises(ConfigError, match="APPAREL_TRINO_S3_SECRET_KEY"):
        s3_identities(settings, {k: v for k, v in ROLES.items() if k != "APPAREL_TRINO_S3_SECRET_KEY"})
