"""``apparel query``: Spark SQL over the lakehouse, with every existing table addressable as
``<layer>.<table>`` (``bronze.orders``, ``silver.fct_orders``, ...)."""

from __future__ import annotations

from apparel.catalog import LAYERS, TABLES, Catalog
from apparel.config import Settings


def register_tables(spark, settings: Settings) -> list[str]:
    """Create each layer as a database and each existing Delta table in it (session catalog only)."""
    catalog = Catalog(settings)
    registered = []
    for layer in LAYERS:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {layer}")
    for name in sorted(TABLES):
        if catalog.exists(spark, name):
            spark.sql(f"CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{catalog.path(name)}'")
            registered.append(name)
    return registered


def run_query(settings: Settings, sql: str, limit: int = 1000, spark=None):
    """Run ``sql``; return (pandas DataFrame of at most ``limit`` rows, whether rows were cut off)."""
    from apparel.spark import get_spark

    spark = spark or get_spark(settings)
    register_tables(spark, settings)
    rows = spark.sql(sql).limit(limit + 1).toPandas()
    return rows.head(limit), len(rows) > limit
