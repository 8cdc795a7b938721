"""The seven source tables: their columns, types, keys and where they come from.

One definition serves the store database DDL, the dataset loader, the JDBC read schema and bronze.
Types are logical: ``bigint`` (ids, quantities and whole-rupiah money), ``text`` and ``timestamp``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # bigint | text | timestamp

    @property
    def spark_type(self) -> str:
        return {"bigint": "BIGINT", "text": "STRING", "timestamp": "TIMESTAMP"}[self.type]


@dataclass(frozen=True)
class SourceTable:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]          # natural key (identity) of a row
    origin: str                   # "store" (the store database) or "excel" (an operations workbook)
    file: str                     # file name in a dataset folder
    incremental: bool = False     # extracted above a high-water mark instead of snapshotted

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def spark_ddl(self) -> str:
        """Column list in Spark DDL, e.g. ``order_id BIGINT, order_date TIMESTAMP``."""
        return ", ".join(f"{c.name} {c.spark_type}" for c in self.columns)


def _cols(spec: str) -> tuple[Column, ...]:
    return tuple(Column(*part.split(":")) for part in spec.split())


SOURCES: dict[str, SourceTable] = {
    t.name: t
    for t in [
        SourceTable("provinces", _cols("province_id:bigint province_names:text"),
                    ("province_id",), "excel", "provinces.xlsx"),
        SourceTable("cities", _cols("city_id:bigint city_names:text province_id:bigint"),
                    ("city_id",), "excel", "cities.xlsx"),
        SourceTable("customers", _cols("customer_id:bigint first_name:text last_name:text gender:text"),
                    ("customer_id",), "store", "customers.parquet"),
        SourceTable("products",
                    _cols("product_id:bigint product_name:text size:text price:bigint product_category_id:bigint"),
                    ("product_id",), "store", "products.json"),
        SourceTable("product_categories", _cols("product_category_id:bigint product_category_name:text"),
                    ("product_category_id",), "store", "product_categories.json"),
        SourceTable("orders",
                    _cols("order_id:bigint order_date:timestamp customer_id:bigint province_id:bigint city_id:bigint"),
                    ("order_id",), "store", "orders.csv", incremental=True),
        SourceTable("order_details",
                    _cols("order_detail_id:bigint order_id:bigint product_id:bigint qty:bigint "
                          "item_price:bigint unit_sales:bigint"),
                    ("order_id", "order_detail_id"), "store", "order_details.csv", incremental=True),
    ]
}

STORE_TABLES = [t for t in SOURCES.values() if t.origin == "store"]
EXCEL_TABLES = [t for t in SOURCES.values() if t.origin == "excel"]
