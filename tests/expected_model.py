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


def assert_same(spark_df, expected: pd.DataFrame, keys: list[str]) -> None:
    """Whole-table comparison, ignoring row order and integer widths; floats to 1e-9 relative."""
    got = spark_df.toPandas()
    assert sorted(got.columns) == sorted(expected.columns), (sorted(got.columns), sorted(expected.columns))
    got = got[list(expected.columns)]
    for c in expected.columns:
        if pd.api.types.is_datetime64_any_dtype(expected[c]):
            got[c] = pd.to_datetime(got[c])
    got = got.sort_values(keys).reset_index(drop=True)
    exp = expected.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, exp, check_dtype=False, check_exact=False, rtol=1e-9)
