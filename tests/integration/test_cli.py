"""The `apparel` command as a user runs it: seed, run (summary and report), query, status, one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from apparel.config import PROJECT_ROOT
from apparel.generator import generate

APPAREL = str(Path(sys.executable).parent / "apparel")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    e = {k: v for k, v in os.environ.items() if not k.startswith("APPAREL_")}
    e.update({"APPAREL_ENV": "ci", "APPAREL_LAKEHOUSE": str(root / "lake"), "APPAREL_LANDING": str(root / "landing"),
              "APPAREL_STORE_DB": f"sqlite:///{root / 'store.db'}", "APPAREL_REPORTS": str(root / "reports")})
    return e


def apparel(env, *args, check=True):
    proc = subprocess.run([APPAREL, *args], env=env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"apparel {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_seed_run_query_status(env, tmp_path):
    out = apparel(env, "seed", "--scale", "0.1", "--seed", "3").stdout
    sample = tmp_path / "sample"
    generate(sample, scale=0.1, seed=3)  # the same sample, to count independently
    lines = pd.read_csv(sample / "order_details.csv")
    assert re.search(rf"store_db\.order_details\s+{len(lines):,} rows", out), out

    run = apparel(env, "run", "--run-date", "2026-01-01")
    assert "[bronze]" in run.stdout and "[silver]" in run.stdout and "[gold]" in run.stdout
    assert re.search(r"quarantine 0 rows", run.stdout), run.stdout
    revenue = int((lines.qty * lines.item_price).sum())
    assert f"revenue Rp {revenue:,}" in run.stdout
    report = Path(re.search(r"^report: (.+\.html)$", run.stdout, re.M).group(1))
    text = report.read_text()
    assert report.parent == Path(env["APPAREL_REPORTS"])
    for caption in ("Monthly revenue", "Top products by revenue", "Revenue by province", "RFM segments",
                    "Data quality"):
        assert caption in text
    assert "<svg" in text

    q = apparel(env, "query", "SELECT count(*) AS n, sum(line_revenue) AS rev FROM silver.fct_order_lines").stdout
    assert re.search(rf"^\s*{len(lines)}\s+{revenue}\s*$", q, re.M), q

    status = apparel(env, "status").stdout
    assert re.search(rf"bronze\.order_details\s+{len(lines):,}\s+\d+", status), status
    assert re.search(r"gold\.dm_sales_monthly\s+\d+", status), status


def test_errors_are_one_line(env):
    bad = apparel(env, "query", "SELECT * FROM nowhere.nothing", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in bad.stderr
    layers = apparel(env, "run", "--layers", "platinum", check=False)
    assert layers.returncode == 1
    assert layers.stderr.strip() == "error: unknown layer(s) platinum; choose from bronze, silver, gold"
    missing = apparel(env, "seed", "--dataset", "/nonexistent/folder", check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: dataset folder not found: /nonexistent/folder"
