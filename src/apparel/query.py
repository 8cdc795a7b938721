"""``apparel query``: Spark SQL over the lakehouse, with every existing table addressable as
``<layer>.<table>`` (``bronze.orders``, ``silver.fct_orders``, ...).

Only the tables the SQL names are registered in the session (a layer named alone, as in ``SHOW TABLES IN gold``,
registers the whole layer), so a query does not wait for every table of the lakehouse to be opened. A table read
``FROM`` or ``JOIN`` that the catalog does not know (``silver.fct_order``) is an error before Spark starts, naming
the tables of its layer."""

from __future__ import annotations

import re

from apparel.catalog import LAYERS, TABLES, Catalog
from apparel.config import Settings
from apparel.errors import QueryError

_LAYER = "|".join(LAYERS)
# <layer>.<name>, either part in backquotes or not (spark_catalog.<layer>.<name> too)
_QUALIFIED = re.compile(rf"`?\b({_LAYER})\b`?\s*\.\s*`?([A-Za-z_]\w*)", re.I)
# the same right after FROM or JOIN, and not an argument's end (EXTRACT(YEAR FROM t.col)): a table read
_READ = re.compile(rf"\b(?:FROM|JOIN)\s+`?({_LAYER})`?\s*\.\s*`?([A-Za-z_]\w*)`?(?![\w`(]|\s*[.)])", re.I)
# a layer not followed by a dot: SHOW TABLES IN gold
_ALONE = re.compile(rf"\b({_LAYER})\b(?!`?\s*\.)", re.I)


def tables_named(sql: str) -> set[str]:
    """The catalogued tables ``sql`` may use: each ``<layer>.<table>`` it names, and every table of a layer it
    names alone. Raises QueryError for a ``<layer>.<name>`` read FROM or JOIN that is no catalogued table."""
    for layer, name in _READ.findall(sql):
        if f"{layer.lower()}.{name.lower()}" not in TABLES:
            layer = layer.lower()
            known = sorted(info.table for info in TABLES.values() if info.layer == layer)
            raise QueryError(f"unknown table {layer}.{name}: the {layer} layer holds {', '.join(known)}")
    named = {f"{layer.lower()}.{name.lower()}" for layer, name in _QUALIFIED.findall(sql)}
    layers = {layer.lower() for layer in _ALONE.findall(sql)}
    return {n for n in TABLES if n in named or TABLES[n].layer in layers}


def register_tables(spark, settings: Settings, names: set[str] | None = None) -> list[str]:
    """Create each layer as a database and each existing Delta table of ``names`` (default: every catalogued
    table) in it (session catalog only)."""
    catalog = Catalog(settings)
    registered = []
    for layer in LAYERS:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
    for name in sorted(TABLES if names is None else names):
        if catalog.exists(spark, name):
            spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{catalog.path(name)}'")
            registered.append(name)
    return registered


def run_query(settings: Settings, sql: str, limit: int = 1000, spark=None):
    """Run ``sql``; return (pandas DataFrame of at most ``limit`` rows, whether rows were cut off)."""
    from apparel.spark import get_spark

    names = tables_named(sql)  # before the session: an unknown table fails in a second
    spark = spark or get_spark(settings)
    register_tables(spark, settings, names)
    rows = spark.sql(sql).limit(limit + 1).toPandas()
    return rows.head(limit), len(rows) > limit
