"""docker-compose.yml is for users (no Docker engine here): check its structure and that it ships no secret."""

import re

import yaml

from apparel.config import PROJECT_ROOT


def compose() -> tuple[str, dict]:
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    return text, yaml.safe_load(text)


def test_compose_services_are_pinned_healthchecked_and_secret_free():
    text, spec = compose()
    assert {"store-db", "object-store", "bucket-init", "trino"} <= set(spec["services"])
    for name, svc in spec["services"].items():
        if "image" in svc:
            assert ":" in svc["image"] and not svc["image"].endswith(":latest"), f"{name}: pin the image"
    for name in ("store-db", "object-store", "trino"):
        assert "healthcheck" in spec["services"][name], name
    # passwords and secret keys come from .env and have no default
    for m in re.finditer(r"^\s*\w*(?:PASSWORD|SECRET_KEY):\s*(.+)", text, re.MULTILINE):
        assert m.group(1).startswith("${") and ":?" in m.group(1), m.group(0)


def test_compose_object_store_and_trino_are_the_designs_pinned_images():
    _, spec = compose()
    services = spec["services"]
    assert services["object-store"]["image"] == "minio/minio:RELEASE.2025-09-07T16-13-09Z"
    assert "--console-address" in services["object-store"]["command"]
    assert services["bucket-init"]["image"].startswith("minio/mc:RELEASE.")
    assert services["bucket-init"]["depends_on"] == {"object-store": {"condition": "service_healthy"}}
    assert services["trino"]["image"] == "trinodb/trino:476"
    assert services["trino"]["depends_on"] == {"bucket-init": {"condition": "service_completed_successfully"}}


def test_compose_scales_out_minio_over_two_nodes_and_trino_over_a_worker():
    _, spec = compose()
    services = spec["services"]
    nodes = [services["object-store"], services["object-store-2"]]
    assert [n["hostname"] for n in nodes] == ["object-store-1", "object-store-2"]
    for node in nodes:  # one erasure set over both nodes' two drives each
        assert node["command"].startswith("server http://object-store-{1...2}:9000/data{1...2} ")
        assert sorted(v.split(":")[1] for v in node["volumes"]) == ["/data1", "/data2"]
        assert node["image"] == services["object-store"]["image"]
    worker = services["trino-worker"]
    assert worker["image"] == services["trino"]["image"]
    assert worker["environment"] == services["trino"]["environment"]

    def config(service: dict) -> dict[str, str]:
        mount = next(v for v in service["volumes"] if v.endswith(":/etc/trino/config.properties:ro"))
        lines = (PROJECT_ROOT / mount.split(":")[0]).read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    assert config(services["trino"])["node-scheduler.include-coordinator"] == "false"
    assert config(worker)["coordinator"] == "false"
    assert config(worker)["discovery.uri"] == "http://trino:8080"


def test_compose_trino_mounts_the_native_catalog_and_provides_every_variable_it_reads():
    _, spec = compose()
    trino = spec["services"]["trino"]
    mount = next(v for v in trino["volumes"] if v.endswith(":/etc/trino/catalog:ro"))
    catalog_dir = PROJECT_ROOT / mount.split(":")[0]
    assert catalog_dir == PROJECT_ROOT / "conf" / "trino" / "catalog"
    catalog = (catalog_dir / "lakehouse.properties").read_text()
    assert "connector.name=delta_lake" in catalog and "delta.register-table-procedure.enabled=true" in catalog
    needed = set(re.findall(r"\$\{ENV:(\w+)\}", catalog))
    assert needed == set(trino["environment"]), "the catalog reads exactly what the service provides"
    # inside the compose network the store is reached by its service name
    assert trino["environment"]["APPAREL_S3_ENDPOINT"] == "http://object-store:9000"


def test_compose_has_the_airflow_services_on_a_postgres_metadata_db():
    spec = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = spec["services"]
    for name in ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        svc = services[name]
        assert svc["command"] == name.removeprefix("airflow-"), name
        assert "healthcheck" in svc, name
        assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert "@airflow-db:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/apparel/dags"
        assert "./dags:/opt/apparel/dags:ro" in svc["volumes"]
        assert svc["image"].endswith(":3.3.2")
    assert services["airflow-db"]["image"].startswith("postgres:15")
    dockerfile = (PROJECT_ROOT / services["airflow-scheduler"]["build"]["dockerfile"]).read_text()
    assert "FROM apache/airflow:3.3.2" in dockerfile and "constraints-airflow.txt" in dockerfile


def test_env_example_documents_every_override():
    from apparel.config import ENV_OVERRIDES

    doc = (PROJECT_ROOT / ".env.example").read_text()
    for var in ENV_OVERRIDES:
        assert f"{var}=" in doc, f"{var} is not documented in .env.example"
    # and every variable docker-compose.yml reads
    text, _ = compose()
    for var in set(re.findall(r"(?<!\$)\$\{(\w+)", text)):
        assert f"{var}=" in doc, f"{var} (docker-compose.yml) is not documented in .env.example"


def test_superset_image_is_the_pinned_release_with_the_native_stacks_driver_pins():
    spec = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    svc = spec["services"]["superset"]
    assert "healthcheck" in svc and svc["build"]["context"] == "superset"
    dockerfile = (PROJECT_ROOT / "superset" / "Dockerfile").read_text()
    pins = dict(line.split("==", 1) for line in (PROJECT_ROOT / "requirements-superset.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert re.search(r"^FROM apache/superset:(\S+)$", dockerfile, re.M).group(1) == pins["apache-superset"]
    assert svc["image"].endswith(":" + pins["apache-superset"])
    for pkg, version in re.findall(r'"([A-Za-z_.-]+)(?:\[\w+\])?==([^"]+)"', dockerfile):
        assert pins[{"flask-caching": "Flask-Caching"}.get(pkg, pkg)] == version, pkg
    # the secrets come from .env, with no default; the assets and settings are the project's
    for var in ("SUPERSET_SECRET_KEY", "SUPERSET_ADMIN_PASSWORD"):
        assert svc["environment"][var].startswith(f"${{{var}:?"), var
    assert "./superset:/app/apparel:ro" in svc["volumes"]
    assert svc["environment"]["SUPERSET_CONFIG_PATH"] == "/app/apparel/superset_config.py"


def test_compose_has_the_change_data_capture_services_behind_a_profile():
    _, spec = compose()
    services = spec["services"]
    for name in ("kafka", "kafka-connect", "cdc-init"):
        assert services[name].get("profiles") == ["cdc"], name
    assert services["kafka"]["image"] == "apache/kafka:4.4.0"
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "wal_level=logical" in services["store-db"]["command"]
    assert services["cdc-init"]["depends_on"] == {"kafka-connect": {"condition": "service_healthy"}}
    dockerfile = (PROJECT_ROOT / services["kafka-connect"]["build"]["dockerfile"]).read_text()
    native = (PROJECT_ROOT / "scripts" / "connect.sh").read_text()
    # the image and the native script install the same plugin, checked by the same hash
    sha = re.search(r"PLUGIN_SHA256=(\w+)", native).group(1)
    assert f"PLUGIN_SHA256={sha}" in dockerfile
    worker = (PROJECT_ROOT / "docker" / "kafka-connect" / "worker.properties").read_text()
    assert "exactly.once.source.support=enabled" in worker
