"""The pipeline's gold marts equal the DuckDB reference's (bench/duckdb_reference.py), mart by mart.

The reference is a second implementation of docs/data_contract.md and docs/data_model.md in SQL (DuckDB,
delta-rs) that shares no code with the pipeline. The pipeline's side is the session's run of the store's real
dataset (`shared_lake`: 7,000 orders, 18,322 lines, 200 customers, every month of a year); the reference reads
the same files, for the same run date. Each mart is compared whole and type-aware: the reference's pandas rows
become a Spark DataFrame with the gold table's schema (an integer where a double belongs, or the reverse, fails),
then ``assertDataFrameEqual`` (any row order, doubles to its default tolerance)."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from apparel.catalog import Catalog
from apparel.config import PROJECT_ROOT
from conftest import SHARED_RUN_DATE

pytest.importorskip("duckdb")
pytest.importorskip("deltalake")

MARTS = ["dm_sales_monthly", "dm_product_monthly", "dm_product_ranking", "dm_region_monthly",
         "dm_category_gender_monthly", "dm_customer_rfm", "dm_customer_cohorts", "dm_basket_pairs"]


def load_reference():
    """bench/ is not a package: load bench/duckdb_reference.py as a module."""
    path = PROJECT_ROOT / "bench" / "duckdb_reference.py"
    spec = importlib.util.spec_from_file_location("duckdb_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _plain(value):
    """A pandas cell as the plain Python value Spark's schema check expects: NaN/NaT/NA -> None, numpy
    scalars -> int/float/bool. No cast between types: a float in a bigint column stays a float and fails."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, np.generic):
        return None if isinstance(value, np.floating) and np.isnan(value) else value.item()
    return value


def to_spark(spark, pdf: pd.DataFrame, schema: T.StructType):
    assert list(pdf.columns) == schema.fieldNames(), (list(pdf.columns), schema.fieldNames())
    rows = [tuple(_plain(v) for v in rec) for rec in pdf.itertuples(index=False, name=None)]
    return spark.createDataFrame(rows, schema, verifySchema=True)


@pytest.fixture(scope="module")
def both(shared_lake, shared_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("shared_duckdb")
    reference = load_reference().build(shared_dataset, out, run_date=SHARED_RUN_DATE)
    return {"catalog": Catalog(shared_lake.settings), "reference": reference, "out": out,
            "lines": len(pd.read_csv(shared_dataset / "order_details.csv"))}


@pytest.mark.parametrize("mart", MARTS)
def test_gold_mart_equals_the_duckdb_reference(spark, both, mart):
    actual = both["catalog"].read(spark, f"gold.{mart}")
    expected_pdf = both["reference"].gold[mart]
    assert len(expected_pdf) > 0, f"the reference's {mart} is empty: the comparison would prove nothing"
    assertDataFrameEqual(actual, to_spark(spark, expected_pdf, actual.schema))


def test_reference_writes_delta_with_the_pipelines_schemas(spark, both):
    """delta-rs' output reads in Spark with the same column names and types as the pipeline's tables."""
    for name in [f"gold.{m}" for m in MARTS] + ["silver.fct_order_lines", "silver.fct_orders"]:
        layer, table = name.split(".")
        written = spark.read.format("delta").load(str(both["out"] / layer / table))
        assertSchemaEqual(written.schema, both["catalog"].read(spark, name).schema)
    # the dataset's lines are all valid and unique: both keep every one of them (counted with pandas)
    assert both["reference"].rows["silver.fct_order_lines"] == both["lines"] == \
        both["catalog"].read(spark, "silver.fct_order_lines").count()
