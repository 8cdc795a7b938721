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
    for m in re.finditer(r"PASSWORD:\s*(.+)", text):
        assert m.group(1).startswith("${") and ":?" in m.group(1), m.group(0)


def test_env_example_documents_every_override():
    from apparel.config import ENV_OVERRIDES

    doc = (PROJECT_ROOT / ".env.example").read_text()
    for var in ENV_OVERRIDES:
        assert f"{var}=" in doc, f"{var} is not documented in .env.example"


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
