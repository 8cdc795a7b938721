"""Declared keys and schemas (docs/data_model.md), on real Spark and Delta.

After a pipeline run over the shared dataset, every silver and gold table passes the checks the jobs run before
each commit, and, computed apart with pandas, its key is unique and never null and its columns have the spec's
types. Then what the checks refuse, at the catalog's every write (overwrite, MERGE, replaced months, new SCD2
keys) and through a real gold run: the error names the table, the key and a sample, and the table keeps its
version. And a declared migration: a stored schema that differs from the declaration is replaced, and said so.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from pyspark.sql import functions as F

import expected_model as em
from apparel.catalog import DECLARED_LAYERS, TABLES, Catalog
from apparel.errors import DeclarationError
from apparel.pipeline import run_layers
from conftest import copy_lake, in_parallel, settings_in

DECLARED = sorted(n for n, info in TABLES.items() if info.layer in DECLARED_LAYERS)
MONTHLY = "gold.dm_sales_monthly"


def quiet(_msg):
    pass


@pytest.fixture(scope="module")
def stored(spark, shared_lake) -> dict:
    """Every declared table of the shared run: its Delta schema and its rows (pandas), four tables at a time."""
    catalog = Catalog(shared_lake.settings)

    def read(name: str):
        df = catalog.read(spark, name)
        return df.schema, df.toPandas()

    return {"catalog": catalog, "tables": in_parallel(DECLARED, read)}


def test_every_declared_table_was_written(stored):
    assert sorted(stored["tables"]) == DECLARED and len(DECLARED) == 16
    empty = [n for n, (_, rows) in stored["tables"].items() if rows.empty]
    assert empty == []


def test_the_jobs_checks_pass_over_every_stored_table(spark, stored):
    catalog = stored["catalog"]
    failed = {}
    for name in DECLARED:
        try:
            catalog.check(catalog.read(spark, name), name)
        except DeclarationError as exc:
            failed[name] = str(exc)
    assert failed == {}


@pytest.mark.parametrize("name", DECLARED)
def test_key_is_unique_and_not_null_by_pandas(stored, name):
    _, rows = stored["tables"][name]
    key = list(TABLES[name].key)
    assert not rows[key].isna().any().any(), rows[rows[key].isna().any(axis=1)].head()
    dup = rows[rows.duplicated(key, keep=False)]
    assert dup.empty, dup.head()


@pytest.mark.parametrize("name", DECLARED)
def test_columns_and_types_are_the_specs(stored, name):
    schema, _ = stored["tables"][name]
    got = [(f.name, f.dataType.simpleString()) for f in schema.fields]
    assert got == [(c, em.spec_type(c, name)) for c, _ in got]
    assert [c for c, _ in got] == [c for c, _ in TABLES[name].columns]


# what the checks refuse ----------------------------------------------------------------------------------


@pytest.fixture
def lake(spark, tmp_path):
    """An empty lakehouse with gold.dm_sales_monthly holding two months (version 0)."""
    catalog = Catalog(settings_in(tmp_path))
    catalog.overwrite(months(spark, [("2024-01-01", 100), ("2024-02-01", 150)]), MONTHLY)
    assert catalog.version(spark, MONTHLY) == 0
    return catalog


def months(spark, rows, revenue: str = "bigint"):
    """dm_sales_monthly rows from (month, revenue) pairs (month None: a null key): 1 order, 1 customer, 1 unit
    each; ``revenue`` the revenue's type."""
    df = spark.createDataFrame(list(rows), "m STRING, revenue BIGINT")
    return df.select(F.to_date("m").alias("month"), F.lit(1).cast("bigint").alias("orders"),
                     F.lit(1).cast("bigint").alias("customers"), F.lit(1).cast("bigint").alias("units"),
                     F.col("revenue").cast(revenue).alias("revenue"), F.col("revenue").alias("avg_order_value"),
                     F.lit(None).cast("double").alias("revenue_mom_pct"))


def refused(catalog, spark, match: str):
    """Context: the block raises DeclarationError matching ``match`` and leaves dm_sales_monthly as it was."""
    class Refused:
        def __enter__(self):
            self.version = catalog.version(spark, MONTHLY)
            self.rows = sorted(map(tuple, catalog.read(spark, MONTHLY).collect()))
            self.raises = pytest.raises(DeclarationError, match=match)
            self.raises.__enter__()
            return self.raises

        def __exit__(self, *exc):
            handled = self.raises.__exit__(*exc)
            assert "nothing was committed" in str(self.raises.excinfo.value)
            assert catalog.version(spark, MONTHLY) == self.version
            assert sorted(map(tuple, catalog.read(spark, MONTHLY).collect())) == self.rows
            return handled

    return Refused()


def test_an_overwrite_with_a_duplicated_key_is_refused_with_the_key_and_a_sample(spark, lake):
    bad = months(spark, [("2024-01-01", 100), ("2024-03-01", 1), ("2024-03-01", 2), ("2024-03-01", 3)])
    with refused(lake, spark, r"gold\.dm_sales_monthly: key \(month\) is not unique: "
                              r"\(month=datetime\.date\(2024, 3, 1\)\) x3"):
        lake.overwrite(bad, MONTHLY)


def test_an_overwrite_with_a_null_key_is_refused(spark, lake):
    bad = months(spark, [("2024-01-01", 100), (None, 5)])
    with refused(lake, spark, r"key \(month\) is null or not unique: \(month=NULL\) x1"):
        lake.overwrite(bad, MONTHLY)


def test_an_overwrite_with_another_type_or_column_is_refused(spark, lake):
    with refused(lake, spark, r"does not match the declared schema: column revenue is double, declared bigint"):
        lake.overwrite(months(spark, [("2024-04-01", 1)], revenue="double"), MONTHLY)
    extra = months(spark, [("2024-04-01", 1)]).withColumn("note", F.lit("x"))
    with refused(lake, spark, r"column note \(string\) is not declared"):
        lake.overwrite(extra, MONTHLY)


def test_a_merge_whose_upserts_repeat_a_key_is_refused(spark, lake):
    new = months(spark, [("2024-01-01", 100), ("2024-02-01", 7), ("2024-02-01", 8)])
    with refused(lake, spark, r"key \(month\) is not unique: \(month=datetime\.date\(2024, 2, 1\)\) x2"):
        lake.merge_changes(MONTHLY, new, lake.read(spark, MONTHLY), key=["month"])
    # the same MERGE with unique keys goes through: one update
    done = lake.merge_changes(MONTHLY, months(spark, [("2024-01-01", 100), ("2024-02-01", 7)]),
                              lake.read(spark, MONTHLY), key=["month"])
    assert (done["upserts"], done["deletes"], done["version"]) == (1, 0, 1)


def test_replaced_months_that_repeat_a_key_are_refused(spark, lake):
    new = months(spark, [("2024-02-01", 7), ("2024-02-01", 8)])
    with refused(lake, spark, r"key \(month\) is not unique"):
        lake.replace_where(new, MONTHLY, "month = DATE'2024-02-01'")


def test_new_keys_already_stored_are_refused(spark, lake):
    with pytest.raises(DeclarationError, match=r"the row\(s\) to insert \(month=datetime\.date\(2024, 1, 1\)\) are "
                                               r"stored already"):
        lake.check_new_keys(spark, MONTHLY, months(spark, [("2024-01-01", 1), ("2024-05-01", 1)]))
    lake.check_new_keys(spark, MONTHLY, months(spark, [("2024-05-01", 1)]))  # a new key passes


def test_a_stored_schema_that_differs_is_migrated_by_an_overwrite_and_said_so(spark, tmp_path):
    said = []
    catalog = Catalog(settings_in(tmp_path), log=said.append)
    old = months(spark, [("2024-01-01", 100)]).drop("revenue_mom_pct")  # last year's declaration
    old.write.format("delta").save(catalog.path(MONTHLY))
    # a MERGE cannot migrate: it says to rebuild
    with pytest.raises(DeclarationError, match=r"stored schema differs from the declaration \(column "
                                               r"revenue_mom_pct \(double\) is missing\).*--full-refresh"):
        catalog.merge_changes(MONTHLY, months(spark, [("2024-01-01", 5)]), catalog.read(spark, MONTHLY), ["month"])
    assert catalog.version(spark, MONTHLY) == 0
    catalog.overwrite(months(spark, [("2024-01-01", 100), ("2024-02-01", 150)]), MONTHLY)
    assert said == ["[catalog] gold.dm_sales_monthly: migrating the stored schema to the declaration "
                    "(column revenue_mom_pct (double) is missing)"]
    stored = [(f.name, f.dataType.simpleString()) for f in catalog.read(spark, MONTHLY).schema.fields]
    assert stored == list(TABLES[MONTHLY].columns)
    # the declaration met, the next overwrite keeps the schema (no migration, nothing said)
    catalog.overwrite(months(spark, [("2024-01-01", 1)]), MONTHLY)
    assert len(said) == 1


def test_a_gold_run_that_breaks_a_declaration_commits_nothing_to_that_mart(spark, shared_lake, tmp_path,
                                                                           monkeypatch):
    """A job, not the catalog alone: declare dm_product_ranking's revenue a double (a job that no longer matches
    its declaration) and rebuild gold: the run fails naming the mart, and the mart keeps its version."""
    settings = copy_lake(shared_lake, tmp_path / "lake")
    catalog = Catalog(settings)
    ranking = "gold.dm_product_ranking"
    before = catalog.version(spark, ranking)
    info = TABLES[ranking]
    monkeypatch.setitem(TABLES, ranking, replace(info, columns=tuple(
        (c, "double" if c == "revenue" else t) for c, t in info.columns)))
    with pytest.raises(DeclarationError, match=r"gold\.dm_product_ranking: .*column revenue is bigint, declared "
                                               r"double; nothing was committed"):
        run_layers(spark, settings, ["gold"], log=quiet, run_date=date(2026, 1, 2), full_refresh=True)
    assert catalog.version(spark, ranking) == before
