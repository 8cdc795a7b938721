"""The declared keys and schemas of src/apparel/catalog.py against their spec, docs/data_model.md: every silver
and gold table's columns in the order of its row there, each column's type by the page's type rules (applied by
the independent model, tests/expected_model.py), and its key from the page's key table. No Spark."""

from __future__ import annotations

import re

import pytest

import expected_model as em
from apparel.catalog import DECLARED_LAYERS, TABLES, parse_columns, schema_problems
from apparel.config import PROJECT_ROOT

DOC = (PROJECT_ROOT / "docs" / "data_model.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end != -1 else None]


def _rows(text: str) -> dict[str, list[str]]:
    """``| `table` | a | b |`` rows of the markdown tables in ``text``: table -> its cells after the first."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\| `([a-z_]+)` \|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def _names(cell: str) -> list[str]:
    """The backticked column names of a columns cell, leaving out what parentheses explain."""
    depth, flat = 0, ""
    for ch in cell:
        depth += ch == "("
        if depth == 0:
            flat += ch
        depth -= ch == ")" and depth > 0
    return re.findall(r"`([a-z_]+)`", flat)


def documented() -> dict[str, list[str]]:
    cols = {f"silver.{t}": _names(cells[-1]) for t, cells in _rows(_section("Silver")).items()}
    cols.update({f"gold.{t}": _names(cells[-1]) for t, cells in _rows(_section("Gold")).items()})
    return cols


def documented_keys() -> dict[str, list[str]]:
    keys = {}
    for t, cells in _rows(_section("Declared keys and schemas")).items():
        if not t.startswith(("dim_", "fct_", "dm_")):
            continue  # the types table
        layer = "silver" if t.startswith(("dim_", "fct_")) else "gold"
        keys[f"{layer}.{t}"] = re.findall(r"`([a-z_]+)`", cells[0])
    return keys


DECLARED = sorted(n for n, info in TABLES.items() if info.layer in DECLARED_LAYERS)


def test_every_silver_and_gold_table_is_declared_and_documented():
    assert DECLARED == sorted(documented()) == sorted(documented_keys())
    assert len(DECLARED) == 16  # 7 silver, 9 gold (docs/data_model.md)


@pytest.mark.parametrize("name", DECLARED)
def test_declared_columns_types_and_key_follow_the_docs(name):
    info = TABLES[name]
    assert [c for c, _ in info.columns] == documented()[name]
    assert {c: t for c, t in info.columns} == {c: em.spec_type(c, name) for c in documented()[name]}
    assert list(info.key) == documented_keys()[name]


def test_parse_columns_reads_nested_types_and_refuses_a_column_without_a_type():
    assert parse_columns("a bigint, b decimal(10, 2), c map<string,bigint>") == (
        ("a", "bigint"), ("b", "decimal(10,2)"), ("c", "map<string,bigint>"))
    with pytest.raises(ValueError, match="bad column declaration 'b'"):
        parse_columns("a bigint, b")


def test_schema_problems_name_each_difference():
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    info = TABLES["gold.dm_basket_pairs"]
    right = StructType([StructField(c, {"string": StringType(), "bigint": LongType(), "double": DoubleType()}[t])
                        for c, t in info.columns])
    assert schema_problems(info, right) == []
    wrong = StructType([f if f.name != "orders_together" else StructField("orders_together", DoubleType())
                        for f in right.fields if f.name != "lift"] + [StructField("note", StringType())])
    assert schema_problems(info, wrong) == ["column lift (double) is missing", "column note (string) is not declared",
                                            "column orders_together is double, declared bigint"]
    swapped = StructType([right.fields[1], right.fields[0], *right.fields[2:]])
    assert schema_problems(info, swapped) == [
        "columns in order (style_b, style_a, orders_together, support, confidence_a_to_b, confidence_b_to_a, lift), "
        "declared (style_a, style_b, orders_together, support, confidence_a_to_b, confidence_b_to_a, lift)"]
