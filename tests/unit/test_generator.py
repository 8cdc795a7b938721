"""Tests of the sample dataset generator (pandas only, no Spark)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from apparel.generator import generate
from conftest import SHARED_DATASET as REAL_DIR  # $APPAREL_SHARED_DATASET, else ../shared beside the checkout

TEXT_FILES = ["products.json", "product_categories.json", "orders.csv", "order_details.csv"]
ALL_FILES = ["provinces.xlsx", "cities.xlsx", "customers.parquet", *TEXT_FILES]


def read(folder: Path, name: str) -> pd.DataFrame:
    """Read one dataset file the way a consumer of the real dataset would."""
    path = folder / name
    if name.endswith(".xlsx"):
        return pd.read_excel(path)
    if name.endswith(".parquet"):
        return pd.read_parquet(path)
    if name.endswith(".json"):
        return pd.read_json(path)
    return pd.read_csv(path)


@pytest.fixture(scope="module")
def scale1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("scale1")
    return out, generate(out, scale=1.0, seed=7)


@pytest.fixture(scope="module")
def tables(scale1: tuple[Path, dict[str, int]]) -> dict[str, pd.DataFrame]:
    out, _ = scale1
    return {name.split(".")[0]: read(out, name) for name in ALL_FILES}


def test_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert generate(a, scale=0.2, seed=11) == generate(b, scale=0.2, seed=11)
    for name in TEXT_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in ("provinces.xlsx", "cities.xlsx", "customers.parquet"):
        pd.testing.assert_frame_equal(read(a, name), read(b, name))


def test_seed_changes_data(tmp_path: Path) -> None:
    generate(tmp_path / "a", scale=0.1, seed=1)
    generate(tmp_path / "b", scale=0.1, seed=2)
    assert (tmp_path / "a/orders.csv").read_bytes() != (tmp_path / "b/orders.csv").read_bytes()


def test_row_counts_scale_1(
    scale1: tuple[Path, dict[str, int]], tables: dict[str, pd.DataFrame]
) -> None:
    _, counts = scale1
    assert {name: len(df) for name, df in tables.items()} == counts
    assert counts["customers"] == 200
    assert counts["products"] == 43
    assert counts["product_categories"] == 2
    assert counts["provinces"] == 11
    assert 200 <= counts["cities"] <= 240
    assert counts["orders"] == 7000
    assert 17_100 <= counts["order_details"] <= 18_900


def test_row_counts_scale_01(tmp_path: Path) -> None:
    counts = generate(tmp_path, scale=0.1, seed=7)
    assert counts["customers"] == 20
    assert counts["orders"] == 700
    assert 1_710 <= counts["order_details"] <= 1_890
    # Reference tables do not scale.
    assert (counts["products"], counts["product_categories"], counts["provinces"]) == (43, 2, 11)
    assert 200 <= counts["cities"] <= 240


def test_sheet_names(scale1: tuple[Path, dict[str, int]]) -> None:
    out, _ = scale1
    assert list(pd.read_excel(out / "provinces.xlsx", sheet_name=None)) == ["Sheet1"]
    assert list(pd.read_excel(out / "cities.xlsx", sheet_name=None)) == ["Worksheet"]


def test_json_is_columns_orient(
    scale1: tuple[Path, dict[str, int]], tables: dict[str, pd.DataFrame]
) -> None:
    out, _ = scale1
    for name in ("products", "product_categories"):
        assert (out / f"{name}.json").read_text() == tables[name].to_json(orient="columns")


def test_values(tables: dict[str, pd.DataFrame]) -> None:
    cities, products, orders = tables["cities"], tables["products"], tables["orders"]
    assert cities["city_names"].str.match(r"^(KABUPATEN|KOTA) [A-Z ]+$").all()
    assert tables["provinces"]["province_names"].str.isupper().all()
    assert set(tables["customers"]["gender"]) == {"Male", "Female"}
    assert set(products["size"]) <= {"M", "L", "XL"}
    assert (products["price"] % 5_000 == 0).all()
    bands = {"T-shirt": (30_000, 60_000), "Sweater": (125_000, 150_000),
             "Hoodie": (180_000, 200_000), "Jeans": (200_000, 500_000)}
    for kind, (low, high) in bands.items():
        prices = products.loc[products["product_name"].str.startswith(kind), "price"]
        assert len(prices) > 0 and prices.between(low, high).all(), kind
    assert orders["order_date"].str.fullmatch(r"2022-\d\d-\d\d 00:00:00\.000").all()
    assert orders["order_date"].is_monotonic_increasing
    assert orders["order_id"].tolist() == list(range(1, len(orders) + 1))
    assert orders["order_date"].str[5:7].nunique() == 12


def test_order_details_consistent(tables: dict[str, pd.DataFrame]) -> None:
    details, products = tables["order_details"], tables["products"]
    assert (details["unit_sales"] == details["qty"] * details["item_price"]).all()
    price = details["product_id"].map(products.set_index("product_id")["price"])
    assert (details["item_price"] == price).all()
    assert details["order_detail_id"].iloc[0] == 10_000
    assert details["order_detail_id"].diff().iloc[1:].eq(1).all()
    assert details["order_id"].is_monotonic_increasing
    assert not details.duplicated(["order_id", "product_id"]).any()
    assert details.groupby("order_id").size().between(1, 6).all()
    assert (details["qty"] >= 1).all()
    assert details["qty"].value_counts().idxmax() == 1


def test_city_belongs_to_province(tables: dict[str, pd.DataFrame]) -> None:
    orders, cities = tables["orders"], tables["cities"]
    expected = orders["city_id"].map(cities.set_index("city_id")["province_id"])
    assert (orders["province_id"] == expected).all()


def test_foreign_keys(tables: dict[str, pd.DataFrame]) -> None:
    t = tables
    assert t["cities"]["province_id"].isin(t["provinces"]["province_id"]).all()
    category_ids = t["product_categories"]["product_category_id"]
    assert t["products"]["product_category_id"].isin(category_ids).all()
    assert t["orders"]["customer_id"].isin(t["customers"]["customer_id"]).all()
    assert t["orders"]["province_id"].isin(t["provinces"]["province_id"]).all()
    assert t["orders"]["city_id"].isin(t["cities"]["city_id"]).all()
    assert t["order_details"]["order_id"].isin(t["orders"]["order_id"]).all()
    assert t["order_details"]["product_id"].isin(t["products"]["product_id"]).all()
    assert set(t["orders"]["order_id"]) == set(t["order_details"]["order_id"])
    primary_keys = {
        "provinces": "province_id", "cities": "city_id", "customers": "customer_id",
        "products": "product_id", "product_categories": "product_category_id",
        "orders": "order_id", "order_details": "order_detail_id",
    }
    for name, key in primary_keys.items():
        assert t[name][key].is_unique, name


@pytest.mark.skipif(not REAL_DIR.is_dir(), reason="real dataset not available")
@pytest.mark.parametrize("name", ALL_FILES)
def test_schema_matches_real(name: str, tables: dict[str, pd.DataFrame]) -> None:
    real = read(REAL_DIR, name)
    generated = tables[name.split(".")[0]]
    assert list(generated.columns) == list(real.columns)
    assert generated.dtypes.to_dict() == real.dtypes.to_dict()
