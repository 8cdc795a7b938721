"""An independent pandas model of the expected facts and marts, built straight from source rows.

It shares no code with the pipeline: it reads the files with plain pandas and re-derives the numbers the
Spark jobs must produce. Tests compare the two.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

UNKNOWN = "Unknown"


def read_sources(folder: Path) -> dict[str, pd.DataFrame]:
    orders = pd.read_csv(folder / "orders.csv")
    orders["order_date"] = pd.to_datetime(orders["order_date"], errors="coerce")
    return {
        "provinces": pd.read_excel(folder / "provinces.xlsx", sheet_name="Sheet1"),
        "cities": pd.read_excel(folder / "cities.xlsx", sheet_name="Worksheet"),
        "customers": pd.read_parquet(folder / "customers.parquet"),
        "products": pd.read_json(folder / "products.json"),
        "product_categories": pd.read_json(folder / "product_categories.json"),
        "orders": orders,
        "order_details": pd.read_csv(folder / "order_details.csv"),
    }


def half_up(x: pd.Series) -> pd.Series:
    return np.floor(x + 0.5).astype("int64")


def fact_lines(src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Order lines with their order's attributes; unknown cities and provinces become -1 (docs/data_model.md)."""
    o = src["orders"][["order_id", "order_date", "customer_id", "city_id", "province_id"]]
    f = src["order_details"].merge(o, on="order_id", how="inner")
    f["city_id"] = f["city_id"].where(f["city_id"].isin(src["cities"]["city_id"]), -1)
    f["province_id"] = f["province_id"].where(f["province_id"].isin(src["provinces"]["province_id"]), -1)
    f["month"] = f["order_date"].dt.to_period("M").dt.to_timestamp()
    f["revenue"] = f["qty"] * f["item_price"]
    return f


def sales_monthly(f: pd.DataFrame) -> pd.DataFrame:
    m = f.groupby("month").agg(orders=("order_id", "nunique"), customers=("customer_id", "nunique"),
                               units=("qty", "sum"), revenue=("revenue", "sum")).reset_index().sort_values("month")
    m["avg_order_value"] = half_up(m["revenue"] / m["orders"])
    prev = m["revenue"].shift(1)
    m["revenue_mom_pct"] = (m["revenue"] - prev) * 100.0 / prev
    return m.reset_index(drop=True)


def sales_live(f: pd.DataFrame, now) -> pd.DataFrame:
    """gold.dm_sales_live as docs/data_model.md defines it: the lines whose order time is at or after midnight of
    the day before ``now`` (later than now included), per minute of order time; no row for a minute without a
    line; customers distinct within the minute."""
    start = pd.Timestamp(now).normalize() - pd.Timedelta(days=1)
    w = f[f["order_date"] >= start].assign(minute=lambda x: x["order_date"].dt.floor("min"))
    m = w.groupby("minute").agg(orders=("order_id", "nunique"), units=("qty", "sum"), revenue=("revenue", "sum"),
                                customers=("customer_id", "nunique")).reset_index()
    return m.astype({"orders": "int64", "units": "int64", "revenue": "int64", "customers": "int64"})[
        ["minute", "orders", "units", "revenue", "customers"]].sort_values("minute").reset_index(drop=True)


def product_labels(src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    cats = src["product_categories"].rename(columns={"product_category_name": "category_name"})
    p = src["products"].merge(cats, on="product_category_id", how="left")
    p["category_name"] = p["category_name"].fillna(UNKNOWN)
    return p[["product_id", "product_name", "size", "category_name"]]


def product_ranking(f: pd.DataFrame, src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    r = f.groupby("product_id").agg(units=("qty", "sum"), revenue=("revenue", "sum")).reset_index()
    r["revenue_share_pct"] = r["revenue"] * 100.0 / r["revenue"].sum()
    r = r.sort_values(["revenue", "product_id"], ascending=[False, True]).reset_index(drop=True)
    r["revenue_rank"] = np.arange(1, len(r) + 1)
    r = r.merge(product_labels(src), on="product_id", how="left")
    for c in ("product_name", "size", "category_name"):
        r[c] = r[c].fillna(UNKNOWN)
    return r[["product_id", "product_name", "size", "category_name", "units", "revenue", "revenue_share_pct",
              "revenue_rank"]]


def region_monthly(f: pd.DataFrame, src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per province x city x month, where the order says it is (docs/data_model.md): the order's own
    province, named from the provinces workbook, and its city (named from the cities workbook) within it."""
    g = f.groupby(["province_id", "city_id", "month"]).agg(
        orders=("order_id", "nunique"), customers=("customer_id", "nunique"), units=("qty", "sum"),
        revenue=("revenue", "sum")).reset_index()
    cities = pd.concat([pd.DataFrame({"city_id": src["cities"]["city_id"], "city_name": src["cities"]["city_names"],
                                      "city_type": src["cities"]["city_names"].str.split().str[0].str.upper()}),
                        pd.DataFrame([{"city_id": -1, "city_name": UNKNOWN, "city_type": "UNKNOWN"}])])
    provinces = pd.concat([src["provinces"].rename(columns={"province_names": "province_name"}),
                           pd.DataFrame([{"province_id": -1, "province_name": UNKNOWN}])])
    out = g.merge(cities, on="city_id", how="left").merge(provinces, on="province_id", how="left")
    return out[["month", "province_id", "province_name", "city_id", "city_name", "city_type", "orders",
                "customers", "units", "revenue"]]


def basket_pairs(f: pd.DataFrame, src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    all_orders = f["order_id"].nunique()
    styled = f.merge(src["products"][["product_id", "product_name"]], on="product_id", how="inner")
    baskets = styled.groupby("order_id")["product_name"].apply(lambda s: sorted(set(s)))
    per_style = styled.groupby("product_name")["order_id"].nunique()
    together: dict[tuple[str, str], int] = {}
    for styles in baskets:
        for a, b in combinations(styles, 2):
            together[(a, b)] = together.get((a, b), 0) + 1
    rows = []
    for (a, b), n in together.items():
        rows.append({"style_a": a, "style_b": b, "orders_together": n, "support": n / all_orders,
                     "confidence_a_to_b": n / per_style[a], "confidence_b_to_a": n / per_style[b],
                     "lift": (n / per_style[a]) / (per_style[b] / all_orders)})
    return pd.DataFrame(rows)


def product_attributes(src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each product's labels (docs/data_model.md, dim_product): its name, the name's first word (type) and the
    rest (colour), size and category name ("Unknown" when the category is not there)."""
    p = product_labels(src).merge(src["products"][["product_id"]], on="product_id")
    words = p["product_name"].str.split(" ", n=1)
    p["product_type"] = words.str[0]
    p["color"] = words.str[1]
    return p[["product_id", "product_name", "product_type", "color", "size", "category_name"]]


def customer_attributes(src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    c = src["customers"].copy()
    c["full_name"] = c[["first_name", "last_name"]].apply(lambda r: " ".join(v for v in r if isinstance(v, str)),
                                                          axis=1)
    return c[["customer_id", "full_name", "gender"]]


def _labelled(df: pd.DataFrame, labels: pd.DataFrame, on: str, columns: list[str]) -> pd.DataFrame:
    """``df`` with ``columns`` of ``labels`` joined on ``on``; "Unknown" where there is none (an orphan)."""
    out = df.merge(labels[[on, *columns]], on=on, how="left")
    for c in columns:
        out[c] = out[c].fillna(UNKNOWN)
    return out


def product_monthly(f: pd.DataFrame, src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per product_id x month, with the product's labels ("Unknown" for an orphan product)."""
    g = f.groupby(["product_id", "month"]).agg(orders=("order_id", "nunique"), units=("qty", "sum"),
                                               revenue=("revenue", "sum")).reset_index()
    out = _labelled(g, product_attributes(src), "product_id",
                    ["product_name", "product_type", "color", "size", "category_name"])
    return out[["product_id", "product_name", "product_type", "color", "size", "category_name", "month", "orders",
                "units", "revenue"]]


def category_gender_monthly(f: pd.DataFrame, src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per category x gender x month: the product's category and the customer's gender ("Unknown"
    without one); customers distinct within the row."""
    j = _labelled(f, product_attributes(src), "product_id", ["category_name"])
    j = _labelled(j, customer_attributes(src), "customer_id", ["gender"])
    g = j.groupby(["category_name", "gender", "month"]).agg(
        customers=("customer_id", "nunique"), units=("qty", "sum"), revenue=("revenue", "sum")).reset_index()
    return g[["category_name", "gender", "month", "customers", "units", "revenue"]]


def _quintile(values: pd.Series, worst_first_ascending: bool) -> pd.Series:
    """docs/data_model.md, RFM: 1 + floor(5 (rank - 1) / n), rank as SQL's rank() with the worst first."""
    rank = values.rank(method="min", ascending=worst_first_ascending)
    return (1 + np.floor(5 * (rank - 1) / len(values))).astype("int64")


def _segment(r: int, f: int, m: int) -> str:
    if r >= 4 and f >= 4 and m >= 4:
        return "Champions"
    if f >= 4 and r >= 3:
        return "Loyal"
    if r <= 2 and f >= 3:
        return "At Risk"
    if r >= 3:
        return "Potential"
    return "Hibernating"


def customer_rfm(f: pd.DataFrame, src: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per customer_id of the lines (lines without one take no part), with the customer's labels;
    recency to the latest order date of all the lines."""
    c = f[f["customer_id"].notna()].assign(day=lambda x: x["order_date"].dt.normalize())
    per = c.groupby("customer_id").agg(first_order_date=("day", "min"), last_order_date=("day", "max"),
                                       orders=("order_id", "nunique"), units=("qty", "sum"),
                                       revenue=("revenue", "sum")).reset_index()
    per["recency_days"] = (f["order_date"].dt.normalize().max() - per["last_order_date"]).dt.days
    per["r_score"] = _quintile(per["recency_days"], worst_first_ascending=False)
    per["f_score"] = _quintile(per["orders"], worst_first_ascending=True)
    per["m_score"] = _quintile(per["revenue"], worst_first_ascending=True)
    per["rfm_segment"] = [_segment(r, f_, m) for r, f_, m in zip(per["r_score"], per["f_score"], per["m_score"])]
    out = _labelled(per, customer_attributes(src), "customer_id", ["full_name", "gender"])
    return out[["customer_id", "full_name", "gender", "first_order_date", "last_order_date", "orders", "units",
                "revenue", "recency_days", "r_score", "f_score", "m_score", "rfm_segment"]]


def customer_cohorts(f: pd.DataFrame) -> pd.DataFrame:
    """One row per cohort month x months since the first order in which some customer of the cohort ordered
    (customers by customer_id; lines without one take no part)."""
    a = f[f["customer_id"].notna()][["customer_id", "month"]].drop_duplicates()
    first = a.groupby("customer_id")["month"].min().rename("cohort_month")
    a = a.join(first, on="customer_id")
    a["months_since_first"] = ((a["month"].dt.year - a["cohort_month"].dt.year) * 12
                               + a["month"].dt.month - a["cohort_month"].dt.month)
    sizes = first.value_counts().rename("cohort_size")
    out = a.groupby(["cohort_month", "months_since_first"])["customer_id"].nunique().rename(
        "active_customers").reset_index().join(sizes, on="cohort_month")
    out["retention_pct"] = out["active_customers"] * 100.0 / out["cohort_size"]
    return out[["cohort_month", "months_since_first", "cohort_size", "active_customers", "retention_pct"]]


# Column types as docs/data_model.md ("Declared keys and schemas") states them, by column name (the marts and
# facts: dim_date's own int calendar columns never reach them).
_INT = {"date_key", "months_since_first", "recency_days", "r_score", "f_score", "m_score", "revenue_rank"}
_BIGINT = {"price", "item_price", "line_revenue", "order_revenue", "revenue", "avg_order_value", "qty", "lines",
           "units", "orders", "customers", "orders_together", "cohort_size", "active_customers"}
_DATE = {"date", "valid_from", "valid_to", "order_month", "month", "cohort_month", "first_order_date",
         "last_order_date"}
_TIMESTAMP = {"order_date", "minute"}
_DOUBLE = {"support", "confidence_a_to_b", "confidence_b_to_a", "lift"}
_BOOLEAN = {"is_weekend", "is_current"}
DIM_DATE_INT = {"year", "quarter", "month", "day_of_month", "day_of_week"}


def spec_type(column: str, table: str = "") -> str:
    """The Spark SQL type docs/data_model.md gives ``column`` (of ``table``, which matters for dim_date only)."""
    if table.endswith("dim_date") and column in DIM_DATE_INT or column in _INT:
        return "int"
    if column.endswith("_id") or column.endswith("_key") or column in _BIGINT:
        return "bigint"
    if column in _DATE:
        return "date"
    if column in _TIMESTAMP:
        return "timestamp"
    if column.endswith("_pct") or column in _DOUBLE:
        return "double"
    if column in _BOOLEAN:
        return "boolean"
    return "string"


def _python(value, typ: str):
    if value is None or value is pd.NaT or (not isinstance(value, str) and pd.isna(value)):
        return None
    if typ == "date":
        return pd.Timestamp(value).date()
    if typ == "timestamp":
        return pd.Timestamp(value).to_pydatetime()
    if typ in ("int", "bigint"):
        if float(value) != int(value):
            raise AssertionError(f"the model computed a fraction ({value}) for an integer column")
        return int(value)
    if typ == "double":
        return float(value)
    if typ == "boolean":
        return bool(value)
    return str(value)


def to_spark(spark, expected: pd.DataFrame, table: str = ""):
    """The model's frame as a Spark DataFrame of the spec's types (NaN and NaT become NULL)."""
    from pyspark.sql import types as T

    spark_types = {"int": T.IntegerType(), "bigint": T.LongType(), "date": T.DateType(),
                   "timestamp": T.TimestampType(), "double": T.DoubleType(), "boolean": T.BooleanType(),
                   "string": T.StringType()}
    types = [spec_type(c, table) for c in expected.columns]
    schema = T.StructType([T.StructField(c, spark_types[t], True) for c, t in zip(expected.columns, types)])
    rows = [tuple(_python(v, t) for v, t in zip(r, types)) for r in expected.itertuples(index=False, name=None)]
    return spark.createDataFrame(rows, schema)


def assert_same(spark_df, expected: pd.DataFrame, table: str = "") -> None:
    """Type-aware whole-table comparison: the schema (column names, order and the spec's types, nullability
    aside) equals the model's, then the rows, in any order, doubles to 1e-9 relative."""
    from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

    want = to_spark(spark_df.sparkSession, expected, table)
    assertSchemaEqual(spark_df.schema, want.schema)
    assertDataFrameEqual(spark_df, want, rtol=1e-9, atol=1e-12)
