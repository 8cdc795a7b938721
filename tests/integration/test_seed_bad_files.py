"""`apparel seed --dataset` on bad files (issue 13, point 10): a corrupt workbook, a wrong sheet, a text in a
number column (CSV and workbook), a missing column, an empty file, a CSV in another encoding. Each gives one
`error:` line naming the file, and nothing is written: no store database, no landing area. An extra column is
not an error: it is reported as a warning line and not loaded (the same reader serves the daily bronze run,
which must not fail because operations added a note column to a workbook).

Each case starts from a small generated dataset and breaks one file; no Spark is involved."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from apparel.generator import generate
from conftest import project_env, run_cli


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("seed_clean")
    generate(folder, scale=0.02, seed=1)
    return folder


def _cities_with_text_id(d: Path) -> None:
    df = pd.read_excel(d / "cities.xlsx", sheet_name="Worksheet")
    df["city_id"] = df["city_id"].astype(object)
    df.loc[2, "city_id"] = "abc"
    df.to_excel(d / "cities.xlsx", sheet_name="Worksheet", index=False)


def _lines_with_text_qty(d: Path) -> None:
    df = pd.read_csv(d / "order_details.csv", dtype=str)
    df.loc[3, "qty"] = "three"
    df.to_csv(d / "order_details.csv", index=False)


CASES = {
    "corrupt workbook": (lambda d: (d / "cities.xlsx").write_bytes(b"PK\x03\x04 not really a zip" * 10),
                         "error: cities.xlsx: not a readable .xlsx workbook (BadZipFile: "),
    "wrong sheet": (lambda d: pd.read_excel(d / "provinces.xlsx").to_excel(d / "provinces.xlsx", sheet_name="Other",
                                                                           index=False),
                    "error: provinces.xlsx: sheet 'Sheet1' not found"),
    "text in a number column (csv)": (_lines_with_text_qty,
                                      "error: order_details.csv: column 'qty', row 5: 'three' is not an integer"),
    "text in a number column (xlsx)": (_cities_with_text_id,
                                       "error: cities.xlsx#Worksheet: column 'city_id', row 4: 'abc' is not an "
                                       "integer"),
    "missing column": (lambda d: pd.read_csv(d / "orders.csv").drop(columns=["city_id"]).to_csv(d / "orders.csv",
                                                                                               index=False),
                       "error: orders.csv: required column 'city_id' is missing; found columns: 'order_id', "
                       "'order_date', 'customer_id', 'province_id'"),
    "empty file": (lambda d: (d / "orders.csv").write_bytes(b""), "error: orders.csv: cannot read (EmptyDataError"),
    "csv in utf-16": (lambda d: (d / "orders.csv").write_text((d / "orders.csv").read_text(), encoding="utf-16"),
                      "error: orders.csv: cannot read (UnicodeDecodeError"),
}


def seed(folder: Path, work: Path) -> tuple[int, str, str]:
    """`apparel seed --dataset folder` through the CLI's entry point, on a store and landing area under work."""
    return run_cli(project_env(work) | {"APPAREL_ENV": "ci"}, "seed", "--dataset", str(folder))


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_file_is_one_error_line_naming_it_and_nothing_is_written(clean, tmp_path, case):
    break_it, expected = CASES[case]
    folder = tmp_path / "dataset"
    shutil.copytree(clean, folder)
    break_it(folder)
    rc, out, err = seed(folder, tmp_path / "work")
    assert rc == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), err
    assert not (tmp_path / "work" / "store.db").exists()
    assert not (tmp_path / "work" / "landing").exists()


def test_an_extra_column_is_a_warning_and_is_not_loaded(clean, tmp_path):
    folder = tmp_path / "dataset"
    shutil.copytree(clean, folder)
    orders = pd.read_csv(folder / "orders.csv")
    orders.assign(note="call back").to_csv(folder / "orders.csv", index=False)
    rc, out, err = seed(folder, tmp_path / "work")
    assert rc == 0, err
    assert "warning: orders.csv: ignored extra column(s) note" in out, out
    with sqlite3.connect(tmp_path / "work" / "store.db") as con:
        columns = [r[1] for r in con.execute("PRAGMA table_info(orders)")]
        assert columns == ["order_id", "order_date", "customer_id", "province_id", "city_id"]
        assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == len(orders)
