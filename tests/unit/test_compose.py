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
