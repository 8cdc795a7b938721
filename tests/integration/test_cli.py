"""The `apparel` command as a user runs it: `make run` (the README's first command: it seeds an empty store and runs
every layer, with its summary and report) and `apparel seed` as commands of their own, then query and status,
one-line errors (those found before Spark starts from the command line). `apparel query` and `apparel status` after
the run, and the Spark-side errors, go through the CLI's entry point in the session's Spark, which each command would
otherwise start for it alone (about 25 CPU seconds of a fresh JVM each, on 2 cores). CI runs `make run` here, not
before the suite: this test is its check on a fresh clone."""

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
from conftest import run_cli

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


def test_make_run_seeds_and_runs_then_seed_query_status(spark, env, tmp_path):
    # the README's first command, as a fresh clone runs it, on an empty store of the test's: it seeds the generated
    # sample (scale 1, seed 7) and runs every layer (the embedded stack, with the CI settings of the whole suite:
    # conf/ci.yaml)
    run = subprocess.run(["make", "run"], env=env, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=900)
    assert run.returncode == 0, f"make run exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    sample = tmp_path / "sample"
    generate(sample, scale=1.0, seed=7)  # the same sample, to count independently
    lines = pd.read_csv(sample / "order_details.csv")
    assert "[seed] the store database is empty: seeding the generated sample (scale 1)" in run.stdout, run.stdout
    assert re.search(rf"store_db\.order_details\s+{len(lines):,} rows", run.stdout), run.stdout
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

    # `apparel seed` on a store of its own (no Spark): what it loaded, counted from the same generator's files
    other = env | {"APPAREL_STORE_DB": f"sqlite:///{tmp_path / 'other.db'}",
                   "APPAREL_LANDING": str(tmp_path / "other-landing")}
    out = apparel(other, "seed", "--scale", "0.1", "--seed", "3").stdout
    small = tmp_path / "small"
    generate(small, scale=0.1, seed=3)
    assert re.search(rf"store_db\.order_details\s+{len(pd.read_csv(small / 'order_details.csv')):,} rows", out), out

    rc, q, err = run_cli(env, "query", "SELECT count(*) AS n, sum(line_revenue) AS rev FROM silver.fct_order_lines")
    assert rc == 0, err
    assert re.search(rf"^\s*{len(lines)}\s+{revenue}\s*$", q, re.M), q

    rc, status, err = run_cli(env, "status")
    assert rc == 0, err
    assert re.search(rf"bronze\.order_details\s+{len(lines):,}\s+\d+", status), status
    assert re.search(r"gold\.dm_sales_monthly\s+\d+", status), status
    # the run lock is free again, and the run is the run log's one row, ended
    assert "\nrun lock: free\n" in status, status
    run_id = re.search(r"lakehouse \S+; run (\S+)$", run.stdout, re.M).group(1)
    assert re.search(rf"^  {run_id}\s+cli\s+run\s+\S+ \S+\s+\S+ \S+\s+succeeded$", status, re.M), status


def test_errors_are_one_line(env):
    # a table the catalog does not know: named with the layer's tables, before Spark starts
    bad = apparel(env, "query", "SELECT * FROM silver.fct_order", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("error: unknown table silver.fct_order: the silver layer holds dim_customer, "
                                  "dim_date, dim_location, dim_product, dim_province, fct_order_lines, fct_orders")
    layers = apparel(env, "run", "--layers", "platinum", check=False)
    assert layers.returncode == 1
    assert layers.stderr.strip() == "error: unknown layer(s) platinum; choose from bronze, silver, gold"
    missing = apparel(env, "seed", "--dataset", "/nonexistent/folder", check=False)
    assert missing.returncode == 1 and missing.stderr.strip() == "error: dataset folder not found: /nonexistent/folder"


def test_a_spark_error_is_one_line(spark, env, tmp_path):
    """What Spark rejects (a schema that is no layer) reaches the user as one line, no traceback, and so does a
    layer run before the layer it reads: `apparel query` and `apparel run --layers gold` on an empty lakehouse,
    through the CLI's entry point, in the session's Spark (the command takes the active session)."""
    rc, out, err = run_cli(env, "query", "SELECT * FROM nowhere.nothing")
    assert rc == 1 and out == ""
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "TABLE_OR_VIEW_NOT_FOUND" in line, err

    empty = env | {"APPAREL_LAKEHOUSE": str(tmp_path / "empty-lake")}
    rc, out, err = run_cli(empty, "run", "--layers", "gold")
    assert rc == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "error: silver.fct_order_lines, silver.dim_product, silver.dim_customer, silver.dim_location, "
        "silver.dim_province not built yet: run the silver layer first"), err
