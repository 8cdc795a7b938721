"""docker-compose.yml is for users (no Docker engine here): check its structure and that it ships no secret."""

import re

import yaml

from apparel.config import PROJECT_ROOT


def test_compose_services_are_pinned_healthchecked_and_secret_free():
    text = (PROJECT_ROOT / "docker-compose.yml").read_text()
    spec = yaml.safe_load(text)
    assert "store-db" in spec["services"]
    for name, svc in spec["services"].items():
        if "image" in svc:
            assert ":" in svc["image"] and not svc["image"].endswith(":latest"), f"{name}: pin the image"
    assert "healthcheck" in spec["services"]["store-db"]
    # passwords come from .env and have no default
    for m in re.finditer(r"^\s*\w*PASSWORD:\s*(.+)", text, re.MULTILINE):
        assert m.group(1).startswith("${") and ":?" in m.group(1), m.group(0)


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
