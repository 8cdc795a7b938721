"""Both notebooks run end to end on the `apparel` kernel (nbclient), on the shared dataset (the session's
`shared_lake`, which they only read): 01 over the seeded store database and landing area, 02 over the gold marts
through Trino and through Spark. Numbers they print are compared with pandas over the source files."""

from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

import expected_model as em
from apparel.config import PROJECT_ROOT

pytestmark = [pytest.mark.slow]
NOTEBOOKS = PROJECT_ROOT / "notebooks"


@pytest.fixture(scope="module")
def kernel():
    """The project's kernel, as `make setup` installs it (into the venv, so it runs the venv's Python)."""
    from jupyter_client.kernelspec import KernelSpecManager

    if "apparel" not in KernelSpecManager().find_kernel_specs():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", "apparel",
                        "--display-name", "Python (apparel)"], check=True, capture_output=True)
    spec = KernelSpecManager().get_kernel_spec("apparel")
    assert spec.argv[0] == sys.executable
    return "apparel"


def run(name: str, kernel: str, env: dict[str, str], monkeypatch) -> tuple[str, int]:
    """Execute a notebook with ``env`` in the kernel's environment; returns (all text output, number of plots)."""
    for key in [k for k in __import__("os").environ if k.startswith("APPAREL_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, kernel_name=kernel, timeout=900, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    text, plots = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", out
            text.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
            plots += "image/png" in out.get("data", {})
    return "\n".join(text), plots


def project_env(settings) -> dict[str, str]:
    return {"APPAREL_ENV": "ci", "APPAREL_LAKEHOUSE": settings.lakehouse, "APPAREL_LANDING": settings.landing,
            "APPAREL_STORE_DB": settings.store_db, "APPAREL_REPORTS": settings.reports, "TZ": "UTC"}


def test_sources_notebook_explores_the_store_and_the_workbooks(kernel, shared_lake, shared_dataset, monkeypatch):
    # the session's seeded store and landing area, which the notebook only reads
    text, plots = run("01_sources.ipynb", kernel, project_env(shared_lake.settings), monkeypatch)
    src = em.read_sources(shared_dataset)
    assert f"{len(src['provinces'])} provinces, {len(src['cities'])} cities" in text
    assert f"orders from {src['orders']['order_date'].min()}" in text
    assert plots == 1


@pytest.mark.services
@pytest.mark.parametrize("source", ["trino", "spark"])
def test_insights_notebook_reads_gold(source, kernel, gold_in_trino, shared_dataset, monkeypatch):
    env = project_env(gold_in_trino["local"]) | {"APPAREL_NOTEBOOK_SOURCE": source}
    if source == "trino":  # the stack's Trino, where the fixture registered the gold marts
        env |= {k: v for k, v in gold_in_trino["env"].items() if k.startswith(("APPAREL_TRINO_", "APPAREL_S3_"))}
    text, plots = run("02_insights.ipynb", kernel, env, monkeypatch)
    facts = em.fact_lines(em.read_sources(shared_dataset))
    assert f"source: {source}" in text
    assert f"total revenue: Rp {int(facts['revenue'].sum()):,}" in text
    assert plots == 4
