"""`apparel query`'s reading of its SQL, before any Spark: which catalogued tables to register, and which
table names are unknown (a one-line error at once)."""

from __future__ import annotations

import pytest

from apparel.catalog import TABLES
from apparel.errors import QueryError
from apparel.query import tables_named

GOLD = {n for n in TABLES if n.startswith("gold.")}
SILVER = {n for n in TABLES if n.startswith("silver.")}


@pytest.mark.parametrize(("sql", "tables"), [
    ("SELECT count(*) FROM silver.fct_order_lines", {"silver.fct_order_lines"}),
    ("select * from `silver`.`fct_orders` o join GOLD.dm_sales_monthly m on o.order_id = m.orders",
     {"silver.fct_orders", "gold.dm_sales_monthly"}),
    ("SELECT * FROM silver . fct_orders, bronze.orders", {"silver.fct_orders", "bronze.orders"}),
    ("SELECT * FROM spark_catalog.ops.dq_results", {"ops.dq_results"}),
    ("SELECT silver.fct_orders.order_id FROM silver.fct_orders", {"silver.fct_orders"}),
    ("SHOW TABLES IN gold", GOLD),                              # a layer alone: all of it
    ("SELECT o.silver FROM silver.fct_orders o", SILVER),       # a word like a layer: more is registered, not less
    ("SELECT * FROM nowhere.nothing", set()),                   # not a layer: Spark says what is wrong
    ("SELECT * FROM mysilver.fct_orders", set()),
    ("SELECT EXTRACT(YEAR FROM gold.month) FROM gold.dm_sales_monthly gold", GOLD),  # an alias read FROM, no error
])
def test_the_tables_a_query_names_are_registered(sql, tables):
    assert tables_named(sql) == tables


@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT * FROM silver.nothing",
     "unknown table silver.nothing: the silver layer holds dim_customer, dim_date, dim_location, dim_product, "
     "dim_province, fct_order_lines, fct_orders"),
    ("SELECT * FROM gold.dm_sales_monthly m JOIN `gold`.`dm_sales` s ON m.month = s.month",
     "unknown table gold.dm_sales: the gold layer holds dm_basket_pairs, dm_category_gender_monthly, "
     "dm_customer_cohorts, dm_customer_rfm, dm_product_monthly, dm_product_ranking, dm_region_monthly, "
     "dm_sales_live, dm_sales_monthly"),
])
def test_an_unknown_table_read_from_a_layer_is_a_one_line_error(sql, message):
    with pytest.raises(QueryError) as err:
        tables_named(sql)
    assert str(err.value) == message
