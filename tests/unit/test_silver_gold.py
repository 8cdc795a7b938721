"""Silver dimensions (apparel.silver) and gold datamarts (apparel.gold) on literal rows.

Every expectation is worked out by hand from docs/data_model.md and the docstrings, never by running the
code under test."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from pyspark.testing import assertDataFrameEqual, assertSchemaEqual

from apparel.gold import (
    dm_basket_pairs,
    dm_category_gender_monthly,
    dm_customer_cohorts,
    dm_customer_rfm,
    dm_product_monthly,
    dm_product_ranking,
    dm_region_monthly,
    dm_sales_live,
    dm_sales_monthly,
    live_window_start,
)
from apparel.schemas import SOURCES
from apparel.silver import (
    build_dim_date,
    build_dim_location,
    build_dim_province,
    city_type,
    product_attributes,
    resolve_orders,
    resolve_version,
    scd2_merge,
    with_unknown_member,
)

OPEN_FROM, OPEN_TO = date(1900, 1, 1), date(9999, 12, 31)


def _key(row: tuple) -> tuple:
    """Sort key that tolerates nulls: (is_null, value) per column."""
    return tuple((v is None, v) for v in row)


def rows(df) -> list[tuple]:
    return sorted((tuple(r) for r in df.collect()), key=_key)


def rounded(rs: list[tuple], places: int = 9) -> list[tuple]:
    return [tuple(round(v, places) if isinstance(v, float) else v for v in r) for r in rs]


# ======================================================================================================
# silver: attribute preparation and the static dimensions
# ======================================================================================================

PRODUCTS_DDL = SOURCES["products"].spark_ddl()
CATEGORIES_DDL = SOURCES["product_categories"].spark_ddl()
PRODUCT_ATTR_COLUMNS = ["product_id", "product_name", "product_type", "color", "size", "price",
                        "product_category_id", "category_name", "_orphan_category"]


def test_product_attributes_split_type_and_colour(spark):
    products = spark.createDataFrame([
        (1, "Kaos Merah", "M", 50000, 10),
        (2, "Hoodie Abu Tua", "L", 150000, 20),   # the colour is everything after the first word
        (3, "Topi Hitam", "ALL", 30000, 10),
    ], PRODUCTS_DDL)
    categories = spark.createDataFrame([(10, "Atasan"), (20, "Outer")], CATEGORIES_DDL)
    out = product_attributes(products, categories)
    assert out.columns == PRODUCT_ATTR_COLUMNS
    assert rows(out) == [
        (1, "Kaos Merah", "Kaos", "Merah", "M", 50000, 10, "Atasan", False),
        (2, "Hoodie Abu Tua", "Hoodie", "Abu Tua", "L", 150000, 20, "Outer", False),
        (3, "Topi Hitam", "Topi", "Hitam", "ALL", 30000, 10, "Atasan", False),
    ]


def test_product_attributes_one_word_name_has_empty_colour(spark):
    products = spark.createDataFrame([(3, "Topi", "ALL", 30000, 10)], PRODUCTS_DDL)
    categories = spark.createDataFrame([(10, "Atasan")], CATEGORIES_DDL)
    assert rows(product_attributes(products, categories)) == [
        (3, "Topi", "Topi", "", "ALL", 30000, 10, "Atasan", False),
    ]


def test_product_attributes_orphan_category_is_unknown_and_flagged(spark):
    products = spark.createDataFrame([
        (1, "Kaos Merah", "M", 50000, 10),
        (4, "Kaos Hitam", "S", 50000, 99),   # no category 99
    ], PRODUCTS_DDL)
    categories = spark.createDataFrame([(10, "Atasan")], CATEGORIES_DDL)
    assert rows(product_attributes(products, categories)) == [
        (1, "Kaos Merah", "Kaos", "Merah", "M", 50000, 10, "Atasan", False),
        (4, "Kaos Hitam", "Kaos", "Hitam", "S", 50000, 99, "Unknown", True),
    ]


def test_city_type_from_the_first_word(spark):
    names = spark.createDataFrame([
        ("Kota Bandung",), ("KABUPATEN BOGOR",), ("kabupaten Sleman",), ("  Kota Medan",),
        ("Jakarta Selatan",), ("Kotabaru",), (None,),
    ], "name STRING")
    out = names.select("name", city_type(names["name"]).alias("city_type"))
    assert rows(out) == [
        ("  Kota Medan", "KOTA"),
        ("Jakarta Selatan", "UNKNOWN"),
        ("KABUPATEN BOGOR", "KABUPATEN"),
        ("Kota Bandung", "KOTA"),
        ("Kotabaru", "UNKNOWN"),              # a prefix of the word is not the word
        ("kabupaten Sleman", "KABUPATEN"),
        (None, "UNKNOWN"),
    ]


CITIES_DDL = SOURCES["cities"].spark_ddl()
PROVINCES_DDL = SOURCES["provinces"].spark_ddl()


def test_dim_location_orphan_province_and_unknown_member(spark):
    cities = spark.createDataFrame([
        (1, "Kota Bandung", 32),
        (2, "Kabupaten Bogor", 32),
        (3, "Kota Antah", 99),          # province 99 does not exist
    ], CITIES_DDL)
    provinces = spark.createDataFrame([(32, "JAWA BARAT"), (51, "BALI")], PROVINCES_DDL)
    out = build_dim_location(cities, provinces)
    assert out.columns == ["city_id", "city_name", "city_type", "province_id", "province_name", "_orphan_province"]
    assert rows(out) == [
        (-1, "Unknown", "UNKNOWN", -1, "Unknown", False),
        (1, "Kota Bandung", "KOTA", 32, "JAWA BARAT", False),
        (2, "Kabupaten Bogor", "KABUPATEN", 32, "JAWA BARAT", False),
        (3, "Kota Antah", "KOTA", -1, "Unknown", True),
    ]


def test_dim_location_has_the_unknown_member_even_without_cities(spark):
    cities = spark.createDataFrame([], CITIES_DDL)
    provinces = spark.createDataFrame([(32, "JAWA BARAT")], PROVINCES_DDL)
    assert rows(build_dim_location(cities, provinces)) == [(-1, "Unknown", "UNKNOWN", -1, "Unknown", False)]


DIM_DATE_COLUMNS = ["date_key", "date", "year", "quarter", "month", "month_name", "day_of_month", "day_of_week",
                    "is_weekend"]
UNKNOWN_DAY = (-1, None, None, None, None, "Unknown", None, None, None)


def test_dim_date_is_contiguous_with_iso_weekdays(spark):
    orders = spark.createDataFrame([
        (datetime(2024, 3, 4, 10, 0),),
        (datetime(2024, 2, 27, 9, 0),),
        (datetime(2024, 2, 29, 12, 0),),   # the days in between are filled in
        (None,),
    ], "order_date TIMESTAMP")
    out = build_dim_date(orders)
    assert out.columns == DIM_DATE_COLUMNS
    assert rows(out) == [
        UNKNOWN_DAY,
        (20240227, date(2024, 2, 27), 2024, 1, 2, "February", 27, 2, False),   # Tuesday
        (20240228, date(2024, 2, 28), 2024, 1, 2, "February", 28, 3, False),
        (20240229, date(2024, 2, 29), 2024, 1, 2, "February", 29, 4, False),
        (20240301, date(2024, 3, 1), 2024, 1, 3, "March", 1, 5, False),
        (20240302, date(2024, 3, 2), 2024, 1, 3, "March", 2, 6, True),         # Saturday
        (20240303, date(2024, 3, 3), 2024, 1, 3, "March", 3, 7, True),         # Sunday
        (20240304, date(2024, 3, 4), 2024, 1, 3, "March", 4, 1, False),        # Monday
    ]


def test_dim_date_across_a_year_end(spark):
    orders = spark.createDataFrame([(datetime(2024, 1, 1, 8, 0),), (datetime(2023, 12, 30, 20, 0),)],
                                   "order_date TIMESTAMP")
    assert rows(build_dim_date(orders)) == [
        UNKNOWN_DAY,
        (20231230, date(2023, 12, 30), 2023, 4, 12, "December", 30, 6, True),
        (20231231, date(2023, 12, 31), 2023, 4, 12, "December", 31, 7, True),
        (20240101, date(2024, 1, 1), 2024, 1, 1, "January", 1, 1, False),
    ]


# ======================================================================================================
# silver: SCD type 2
# ======================================================================================================

INCOMING_DDL = "customer_id BIGINT, name STRING, gender STRING"
DIM_DDL = ("customer_key BIGINT, customer_id BIGINT, name STRING, gender STRING, "
           "valid_from DATE, valid_to DATE, is_current BOOLEAN")
TRACKED = ["name", "gender"]
RUN = date(2024, 5, 1)


def merge(current, incoming, effective=RUN):
    return scd2_merge(current, incoming, "customer_id", "customer_key", TRACKED, effective)


def test_scd2_first_load_numbers_keys_in_natural_key_order(spark):
    incoming = spark.createDataFrame([(30, "Citra", "F"), (10, "Ani", "F"), (20, "Budi", "M")], INCOMING_DDL)
    out = merge(None, incoming)
    assert out.columns == ["customer_key", "customer_id", "name", "gender", "valid_from", "valid_to", "is_current"]
    assert rows(out) == [
        (1, 10, "Ani", "F", OPEN_FROM, OPEN_TO, True),
        (2, 20, "Budi", "M", OPEN_FROM, OPEN_TO, True),
        (3, 30, "Citra", "F", OPEN_FROM, OPEN_TO, True),
    ]


def _loaded(spark):
    return spark.createDataFrame([
        (1, 10, "Ani", "F", OPEN_FROM, OPEN_TO, True),
        (2, 20, "Budi", "M", OPEN_FROM, OPEN_TO, True),
        (3, 30, "Citra", "F", OPEN_FROM, OPEN_TO, True),
    ], DIM_DDL)


def test_scd2_change_closes_the_version_and_opens_a_new_key(spark):
    incoming = spark.createDataFrame([(10, "Ani", "F"), (20, "Budi Santoso", "M"), (30, "Citra", "F")],
                                     INCOMING_DDL)
    assert rows(merge(_loaded(spark), incoming)) == [
        (1, 10, "Ani", "F", OPEN_FROM, OPEN_TO, True),
        (2, 20, "Budi", "M", OPEN_FROM, RUN, False),
        (3, 30, "Citra", "F", OPEN_FROM, OPEN_TO, True),
        (4, 20, "Budi Santoso", "M", RUN, OPEN_TO, True),
    ]


def test_scd2_null_to_value_is_a_change(spark):
    current = spark.createDataFrame([(1, 10, "Ani", None, OPEN_FROM, OPEN_TO, True)], DIM_DDL)
    incoming = spark.createDataFrame([(10, "Ani", "F")], INCOMING_DDL)
    assert rows(merge(current, incoming)) == [
        (1, 10, "Ani", None, OPEN_FROM, RUN, False),
        (2, 10, "Ani", "F", RUN, OPEN_TO, True),
    ]


def test_scd2_new_natural_keys_continue_after_the_largest_key(spark):
    incoming = spark.createDataFrame([
        (10, "Ani", "F"), (20, "Budi", "M"), (30, "Citra", "F"), (25, "Eka", "M"), (15, "Dewi", "F"),
    ], INCOMING_DDL)
    assert rows(merge(_loaded(spark), incoming)) == [
        (1, 10, "Ani", "F", OPEN_FROM, OPEN_TO, True),
        (2, 20, "Budi", "M", OPEN_FROM, OPEN_TO, True),
        (3, 30, "Citra", "F", OPEN_FROM, OPEN_TO, True),
        (4, 15, "Dewi", "F", OPEN_FROM, OPEN_TO, True),   # natural-key order: 15 before 25
        (5, 25, "Eka", "M", OPEN_FROM, OPEN_TO, True),
    ]


def test_scd2_largest_key_counts_closed_versions_and_ignores_the_unknown_member(spark):
    current = spark.createDataFrame([
        (-1, None, "Unknown", "Unknown", OPEN_FROM, OPEN_TO, True),
        (1, 10, "Ani", "F", OPEN_FROM, date(2024, 2, 1), False),
        (7, 10, "Ani Putri", "F", date(2024, 2, 1), OPEN_TO, True),
    ], DIM_DDL)
    incoming = spark.createDataFrame([(10, "Ani Putri", "F"), (40, "Fajar", "M")], INCOMING_DDL)
    assert rows(merge(current, incoming)) == [
        (1, 10, "Ani", "F", OPEN_FROM, date(2024, 2, 1), False),
        (7, 10, "Ani Putri", "F", date(2024, 2, 1), OPEN_TO, True),
        (8, 40, "Fajar", "M", OPEN_FROM, OPEN_TO, True),
    ]


def test_scd2_change_on_the_same_day_is_corrected_in_place(spark):
    current = spark.createDataFrame([
        (1, 10, "Ani", "F", OPEN_FROM, RUN, False),
        (2, 10, "Ani Putri", "F", RUN, OPEN_TO, True),   # opened by an earlier run on the same date
    ], DIM_DDL)
    incoming = spark.createDataFrame([(10, "Ani Putri S", "F")], INCOMING_DDL)
    assert rows(merge(current, incoming)) == [
        (1, 10, "Ani", "F", OPEN_FROM, RUN, False),
        (2, 10, "Ani Putri S", "F", RUN, OPEN_TO, True),
    ]


def test_scd2_vanished_key_keeps_its_rows(spark):
    current = spark.createDataFrame([
        (1, 10, "Ani", "F", OPEN_FROM, OPEN_TO, True),
        (2, 20, "Budi", "M", OPEN_FROM, date(2024, 2, 1), False),
        (3, 20, "Budi Santoso", "M", date(2024, 2, 1), OPEN_TO, True),
    ], DIM_DDL)
    incoming = spark.createDataFrame([(10, "Ani", "F")], INCOMING_DDL)
    assert rows(merge(current, incoming)) == [
        (1, 10, "Ani", "F", OPEN_FROM, OPEN_TO, True),
        (2, 20, "Budi", "M", OPEN_FROM, date(2024, 2, 1), False),
        (3, 20, "Budi Santoso", "M", date(2024, 2, 1), OPEN_TO, True),
    ]


def test_with_unknown_member_appends_key_minus_one(spark):
    dim = _loaded(spark).where("customer_id = 10")
    out = with_unknown_member(dim, "customer_key", {"name": "Unknown", "gender": "Unknown"})
    assert rows(out) == [
        (-1, None, "Unknown", "Unknown", OPEN_FROM, OPEN_TO, True),
        (1, 10, "Ani", "F", OPEN_FROM, OPEN_TO, True),
    ]


def test_resolve_version_picks_the_version_valid_on_the_order_date(spark):
    dim = spark.createDataFrame([
        (-1, None, "Unknown", "Unknown", OPEN_FROM, OPEN_TO, True),
        (1, 10, "Ani", "F", OPEN_FROM, RUN, False),
        (4, 10, "Ani Putri", "F", RUN, OPEN_TO, True),
        (2, 20, "Budi", "M", OPEN_FROM, OPEN_TO, True),
    ], DIM_DDL)
    facts = spark.createDataFrame([
        (1, 10, datetime(2024, 4, 30, 23, 59)),   # the last day of version 1
        (2, 10, datetime(2024, 5, 1, 0, 0)),      # valid_to is exclusive: version 4
        (3, 10, datetime(2024, 6, 1, 12, 0)),
        (4, 20, datetime(1990, 1, 1, 12, 0)),     # before the customer was first seen: still resolves
        (5, 99, datetime(2024, 6, 1, 12, 0)),     # unknown customer
        (6, None, datetime(2024, 6, 1, 12, 0)),   # no customer
    ], "order_id BIGINT, customer_id BIGINT, order_date TIMESTAMP")
    out = resolve_version(facts, dim, "customer_id", "customer_key")
    assert out.columns == ["order_id", "customer_id", "order_date", "customer_key"]
    assert rows(out) == [
        (1, 10, datetime(2024, 4, 30, 23, 59), 1),
        (2, 10, datetime(2024, 5, 1, 0, 0), 4),
        (3, 10, datetime(2024, 6, 1, 12, 0), 4),
        (4, 20, datetime(1990, 1, 1, 12, 0), 2),
        (5, 99, datetime(2024, 6, 1, 12, 0), -1),
        (6, None, datetime(2024, 6, 1, 12, 0), -1),
    ]


def _location(spark):
    """Two provinces and three cities: 10 in province 1, 20 in province 2, 30 in an unknown province."""
    provinces = spark.createDataFrame([(1, "BALI"), (2, "JAWA BARAT")], SOURCES["provinces"].spark_ddl())
    cities = spark.createDataFrame([(10, "KOTA DENPASAR", 1), (20, "KABUPATEN BANDUNG", 2), (30, "KOTA BARU", 9)],
                                   SOURCES["cities"].spark_ddl())
    return build_dim_location(cities, provinces).drop("_orphan_province"), build_dim_province(provinces), provinces


def test_resolve_orders_keeps_the_orders_province_and_flags_a_city_of_another(spark):
    location, _, provinces = _location(spark)
    customers = spark.createDataFrame([(-1, None, "Unknown", "Unknown", OPEN_FROM, OPEN_TO, True)], DIM_DDL)
    orders = spark.createDataFrame([
        (1, datetime(2024, 1, 1, 9), 5, 1, 10),    # city 10 is in province 1: fine
        (2, datetime(2024, 1, 1, 9), 5, 2, 10),    # city 10 is in province 1, the order says 2: mismatch
        (3, datetime(2024, 1, 1, 9), 5, 2, 99),    # unknown city: keeps province 2, no mismatch
        (4, datetime(2024, 1, 1, 9), 5, 7, 10),    # unknown province: -1, no mismatch (nothing to compare)
        (5, datetime(2024, 1, 1, 9), 5, 1, 30),    # the city's own province is unknown: no mismatch
    ], SOURCES["orders"].spark_ddl())
    out = resolve_orders(orders, customers, location, provinces)
    got = rows(out.select("order_id", "city_id", "province_id", "_orphan_city", "_orphan_province",
                          "_city_province_mismatch"))
    assert got == [(1, 10, 1, False, False, False), (2, 10, 2, False, False, True), (3, -1, 2, True, False, False),
                   (4, 10, -1, False, True, False), (5, 30, 1, False, False, False)]


def test_region_monthly_counts_revenue_under_the_orders_own_province(spark):
    location, province, _ = _location(spark)
    lines = spark.createDataFrame([
        # order_id, order_date, customer_id, city_id, province_id, qty, line_revenue
        (1, d(2024, 1, 5), 1, 10, 1, 1, 100),
        (2, d(2024, 1, 6), 2, 10, 2, 2, 200),     # city 10 (province 1), the order says province 2
        (3, d(2024, 1, 7), 3, -1, 2, 3, 300),     # unknown city in province 2
        (4, d(2024, 1, 8), 4, 10, -1, 4, 400),    # unknown province
    ], "order_id BIGINT, order_date TIMESTAMP, customer_id BIGINT, city_id BIGINT, province_id BIGINT, qty BIGINT, "
       "line_revenue BIGINT")
    out = dm_region_monthly(lines, location, province)
    assert out.columns == ["month", "province_id", "province_name", "city_id", "city_name", "city_type", "orders",
                           "customers", "units", "revenue"]
    jan = date(2024, 1, 1)
    assert rows(out) == [
        (jan, -1, "Unknown", 10, "KOTA DENPASAR", "KOTA", 1, 1, 4, 400),
        (jan, 1, "BALI", 10, "KOTA DENPASAR", "KOTA", 1, 1, 1, 100),
        (jan, 2, "JAWA BARAT", -1, "Unknown", "UNKNOWN", 1, 1, 3, 300),
        (jan, 2, "JAWA BARAT", 10, "KOTA DENPASAR", "KOTA", 1, 1, 2, 200),
    ]
    # by province, the mart holds exactly the facts' revenue
    by_province = {r[0]: r[1] for r in out.groupBy("province_id").sum("revenue").collect()}
    assert by_province == {1: 100, 2: 500, -1: 400}


# ======================================================================================================
# gold, on tiny facts
# ======================================================================================================

# the fct_order_lines columns the marts use
LINES_DDL = ("order_id BIGINT, order_date TIMESTAMP, customer_id BIGINT, product_id BIGINT, product_key BIGINT, "
             "qty BIGINT, line_revenue BIGINT")
PRODUCT_DDL = ("product_key BIGINT, product_id BIGINT, product_name STRING, product_type STRING, color STRING, "
               "size STRING, category_name STRING, is_current BOOLEAN")
CUSTOMER_DDL = "customer_key BIGINT, customer_id BIGINT, full_name STRING, gender STRING, is_current BOOLEAN"


def d(y: int, m: int, day: int) -> datetime:
    return datetime(y, m, day, 12, 0)


def test_sales_monthly_counts_distinct_orders_and_rounds_half_up(spark):
    lines = spark.createDataFrame([
        (1, d(2024, 1, 5), 1, 11, 11, 2, 200),
        (1, d(2024, 1, 5), 1, 12, 12, 1, 1),      # second line of order 1
        (2, d(2024, 1, 20), 2, 11, 11, 1, 100),
    ], LINES_DDL)
    out = dm_sales_monthly(lines)
    assert out.columns == ["month", "orders", "customers", "units", "revenue", "avg_order_value", "revenue_mom_pct"]
    # 301 / 2 = 150.5 -> 151 (half up), and the first month has no month-over-month change
    assert rows(out) == [(date(2024, 1, 1), 2, 2, 4, 301, 151, None)]


def test_sales_monthly_month_over_month(spark):
    lines = spark.createDataFrame([
        (1, d(2024, 1, 5), 1, 11, 11, 1, 100),
        (2, d(2024, 2, 5), 1, 11, 11, 1, 150),
        (3, d(2024, 3, 5), 1, 11, 11, 1, 120),
    ], LINES_DDL)
    assert rows(dm_sales_monthly(lines)) == [
        (date(2024, 1, 1), 1, 1, 1, 100, 100, None),
        (date(2024, 2, 1), 1, 1, 1, 150, 150, 50.0),
        (date(2024, 3, 1), 1, 1, 1, 120, 120, -20.0),
    ]


def test_sales_monthly_no_change_pct_after_a_zero_revenue_month(spark):
    lines = spark.createDataFrame([
        (1, d(2024, 1, 5), 1, 11, 11, 1, 0),
        (2, d(2024, 2, 5), 1, 11, 11, 1, 100),
    ], LINES_DDL)
    assert rows(dm_sales_monthly(lines)) == [
        (date(2024, 1, 1), 1, 1, 1, 0, 0, None),
        (date(2024, 2, 1), 1, 1, 1, 100, 100, None),
    ]


def test_sales_monthly_no_change_pct_across_a_month_without_sales(spark):
    lines = spark.createDataFrame([
        (1, d(2024, 1, 5), 1, 11, 11, 1, 100),
        (2, d(2024, 3, 5), 1, 11, 11, 1, 150),    # February had no sales
    ], LINES_DDL)
    assert rows(dm_sales_monthly(lines)) == [
        (date(2024, 1, 1), 1, 1, 1, 100, 100, None),
        (date(2024, 3, 1), 1, 1, 1, 150, 150, None),
    ]


def test_live_window_starts_at_midnight_of_the_day_before_now():
    assert live_window_start(datetime(2024, 3, 10, 14, 37, 20)) == datetime(2024, 3, 9)
    assert live_window_start(datetime(2024, 3, 10)) == datetime(2024, 3, 9)  # midnight: still the day before
    assert live_window_start(datetime(2024, 3, 1, 0, 0, 1)) == datetime(2024, 2, 29)  # across a month (leap year)
    # an aware "now" is taken in UTC, and the start is naive like the facts' timestamps
    wib = timezone(timedelta(hours=7))
    assert live_window_start(datetime(2024, 3, 10, 5, 0, tzinfo=wib)) == datetime(2024, 3, 8)


LIVE_DDL = "minute TIMESTAMP, orders BIGINT, units BIGINT, revenue BIGINT, customers BIGINT"


def test_sales_live_one_row_per_minute_with_sales_since_the_window_start(spark):
    now = datetime(2024, 3, 10, 14, 37, 20)
    lines = spark.createDataFrame([
        (1, datetime(2024, 3, 8, 23, 59, 59), 1, 11, 11, 1, 100),   # before the window: left out
        (2, datetime(2024, 3, 9, 0, 0, 0), 2, 11, 11, 2, 300),      # the window's first instant: in
        (3, datetime(2024, 3, 10, 14, 5, 10), 3, 11, 11, 1, 50),    # two lines of order 3 in one minute
        (3, datetime(2024, 3, 10, 14, 5, 10), 3, 12, 12, 3, 150),
        (4, datetime(2024, 3, 10, 14, 5, 59), 3, 12, 12, 1, 70),    # customer 3's second order, same minute
        (5, datetime(2024, 3, 10, 14, 6, 0), 4, 11, 11, 1, 10),     # the next minute
        (6, datetime(2024, 3, 10, 18, 0, 30), 5, 11, 11, 2, 40),    # later than now: kept
        (7, datetime(2024, 3, 11, 9, 0, 0), 1, 12, 12, 1, 25),      # tomorrow: kept too
        (8, None, 6, 11, 11, 1, 999),                                # no order time: in no minute
    ], LINES_DDL)
    out = dm_sales_live(lines, live_window_start(now))
    expected = spark.createDataFrame([
        (datetime(2024, 3, 9, 0, 0), 1, 2, 300, 1),
        (datetime(2024, 3, 10, 14, 5), 2, 5, 270, 1),   # customers: distinct in the minute
        (datetime(2024, 3, 10, 14, 6), 1, 1, 10, 1),
        (datetime(2024, 3, 10, 18, 0), 1, 2, 40, 1),
        (datetime(2024, 3, 11, 9, 0), 1, 1, 25, 1),
    ], LIVE_DDL)
    assertSchemaEqual(out.schema, expected.schema)
    assertDataFrameEqual(out, expected)
    # revenue has the type of dm_sales_monthly's
    assert out.schema["revenue"].dataType == dm_sales_monthly(lines).schema["revenue"].dataType


def test_sales_live_has_no_row_when_the_window_holds_no_line(spark):
    lines = spark.createDataFrame([(1, datetime(2024, 3, 1, 10, 0), 1, 11, 11, 1, 100)], LINES_DDL)
    out = dm_sales_live(lines, live_window_start(datetime(2024, 3, 10, 12, 0)))
    assertDataFrameEqual(out, spark.createDataFrame([], LIVE_DDL))
    assertSchemaEqual(out.schema, spark.createDataFrame([], LIVE_DDL).schema)


def test_product_ranking_share_is_null_when_there_is_no_revenue(spark):
    lines = spark.createDataFrame([(1, d(2024, 1, 5), 1, 1, 10, 1, 0)], LINES_DDL)
    got = rows(dm_product_ranking(lines, _dim_product(spark)))
    assert got == [(1, "Kaos Merah", "M", "Atasan", 1, 0, None, 1)]


def _dim_product(spark):
    return spark.createDataFrame([
        (-1, None, "Unknown", "Unknown", "Unknown", "Unknown", "Unknown", True),
        (10, 1, "Kaos Lama", "Kaos", "Lama", "M", "Atasan", False),   # an old version: not the label
        (11, 1, "Kaos Merah", "Kaos", "Merah", "M", "Atasan", True),
        (12, 2, "Hoodie Abu", "Hoodie", "Abu", "L", "Outer", True),
        (13, 3, "Topi Hitam", "Topi", "Hitam", "ALL", "Aksesoris", True),
    ], PRODUCT_DDL)


def test_product_ranking_ties_go_to_the_lower_product_id(spark):
    lines = spark.createDataFrame([
        (1, d(2024, 1, 5), 1, 1, 10, 2, 400),
        (1, d(2024, 1, 5), 1, 3, 13, 1, 200),
        (2, d(2024, 1, 6), 2, 2, 12, 1, 100),
        (3, d(2024, 2, 6), 2, 2, 12, 1, 100),
        (4, d(2024, 2, 7), 3, 9, -1, 1, 200),      # a product the dimension does not know
    ], LINES_DDL)
    out = dm_product_ranking(lines, _dim_product(spark))
    assert out.columns == ["product_id", "product_name", "size", "category_name", "units", "revenue",
                           "revenue_share_pct", "revenue_rank"]
    got = rows(out)
    assert got == [
        (1, "Kaos Merah", "M", "Atasan", 2, 400, 40.0, 1),
        (2, "Hoodie Abu", "L", "Outer", 2, 200, 20.0, 2),
        (3, "Topi Hitam", "ALL", "Aksesoris", 1, 200, 20.0, 3),
        (9, "Unknown", "Unknown", "Unknown", 1, 200, 20.0, 4),
    ]
    assert sum(r[6] for r in got) == 100.0


def test_customer_cohorts_retention(spark):
    lines = spark.createDataFrame([
        (1, d(2024, 1, 5), 1, 11, 11, 1, 100),
        (2, d(2024, 1, 20), 2, 11, 11, 1, 100),
        (3, d(2024, 1, 25), 3, 11, 11, 1, 100),
        (4, d(2024, 1, 28), 4, 11, 11, 1, 100),
        (5, d(2024, 1, 30), 1, 11, 11, 1, 100),    # customer 1 again in January: still one customer
        (6, d(2024, 2, 3), 1, 11, 11, 1, 100),
        (7, d(2024, 2, 10), 2, 11, 11, 1, 100),
        (8, d(2024, 2, 15), 5, 11, 11, 1, 100),    # customer 5 starts the February cohort
        (9, d(2024, 3, 1), 1, 11, 11, 1, 100),
        (10, d(2024, 3, 9), 5, 11, 11, 1, 100),
        (11, d(2024, 3, 10), None, 11, 11, 1, 100),  # no customer: in no cohort
    ], LINES_DDL)
    out = dm_customer_cohorts(lines)
    assert out.columns == ["cohort_month", "months_since_first", "cohort_size", "active_customers", "retention_pct"]
    assert rows(out) == [
        (date(2024, 1, 1), 0, 4, 4, 100.0),
        (date(2024, 1, 1), 1, 4, 2, 50.0),
        (date(2024, 1, 1), 2, 4, 1, 25.0),
        (date(2024, 2, 1), 0, 1, 1, 100.0),
        (date(2024, 2, 1), 1, 1, 1, 100.0),
    ]


def _basket_products(spark):
    return spark.createDataFrame([
        (-1, None, "Unknown", "Unknown", "Unknown", "Unknown", "Unknown", True),
        (1, 101, "Kaos Merah", "Kaos", "Merah", "S", "Atasan", True),
        (2, 102, "Kaos Merah", "Kaos", "Merah", "M", "Atasan", True),     # same style, other size
        (3, 103, "Celana Biru", "Celana", "Biru", "L", "Bawahan", True),
        (4, 104, "Topi Hitam", "Topi", "Hitam", "ALL", "Aksesoris", True),
    ], PRODUCT_DDL)


def test_basket_pairs_support_confidence_lift(spark):
    lines = spark.createDataFrame([
        (1, d(2024, 1, 5), 1, 101, 1, 1, 100), (1, d(2024, 1, 5), 1, 103, 3, 1, 100),
        (2, d(2024, 1, 6), 2, 101, 1, 1, 100), (2, d(2024, 1, 6), 2, 102, 2, 1, 100),
        (2, d(2024, 1, 6), 2, 103, 3, 1, 100),
        (3, d(2024, 1, 7), 3, 101, 1, 1, 100), (3, d(2024, 1, 7), 3, 104, 4, 1, 100),
        (4, d(2024, 1, 8), 4, 104, 4, 1, 100), (4, d(2024, 1, 8), 4, 999, -1, 1, 100),
    ], LINES_DDL)
    out = dm_basket_pairs(lines, _basket_products(spark))
    assert out.columns == ["style_a", "style_b", "orders_together", "support", "confidence_a_to_b",
                           "confidence_b_to_a", "lift"]
    # 4 orders; orders with Kaos Merah: 1, 2, 3 (3); Celana Biru: 1, 2 (2); Topi Hitam: 3, 4 (2)
    # Celana Biru + Kaos Merah in 1, 2: support 2/4, conf 2/2 and 2/3, lift (2/2) / (3/4) = 4/3
    # Kaos Merah + Topi Hitam in 3: support 1/4, conf 1/3 and 1/2, lift (1/3) / (2/4) = 2/3
    # the unknown line in order 4 pairs with nothing
    assert rounded(rows(out)) == rounded([
        ("Celana Biru", "Kaos Merah", 2, 0.5, 1.0, 2 / 3, 4 / 3),
        ("Kaos Merah", "Topi Hitam", 1, 0.25, 1 / 3, 0.5, 2 / 3),
    ])


def test_basket_pairs_orders_of_unknown_products_count_in_all_orders(spark):
    lines = spark.createDataFrame([
        (1, d(2024, 1, 5), 1, 101, 1, 1, 100), (1, d(2024, 1, 5), 1, 103, 3, 1, 100),
        (2, d(2024, 1, 6), 2, 999, -1, 1, 100),
    ], LINES_DDL)
    # 2 orders in all: support 1/2, conf 1/1 both ways, lift 1 / (1/2) = 2
    assert rounded(rows(dm_basket_pairs(lines, _basket_products(spark)))) == [
        ("Celana Biru", "Kaos Merah", 1, 0.5, 1.0, 1.0, 2.0),
    ]


def test_every_mart_shows_the_current_labels(spark):
    # product 1 moved from "Kaos Lama" (Atasan) to "Kaos Merah" (Outer); customer 7 from gender M to F. The lines
    # were sold under the old versions (keys 10 and 70): every mart shows the current labels all the same
    products = spark.createDataFrame([
        (-1, None, "Unknown", "Unknown", "Unknown", "Unknown", "Unknown", True),
        (10, 1, "Kaos Lama", "Kaos", "Lama", "M", "Atasan", False),
        (11, 1, "Kaos Merah", "Kaos", "Merah", "M", "Outer", True),
        (12, 2, "Topi Hitam", "Topi", "Hitam", "ALL", "Aksesoris", True),
    ], PRODUCT_DDL)
    customers = spark.createDataFrame([
        (-1, None, "Unknown", "Unknown", True), (70, 7, "Ani", "M", False), (71, 7, "Ani", "F", True),
    ], CUSTOMER_DDL)
    lines = spark.createDataFrame([
        (1, d(2024, 1, 5), 7, 1, 10, 1, 100), (1, d(2024, 1, 5), 7, 2, 12, 1, 50),
        (2, d(2024, 1, 9), 8, 9, -1, 1, 10),      # an unknown product and customer
    ], LINES_DDL)
    jan = date(2024, 1, 1)
    assert rows(dm_product_monthly(lines, products).select("product_id", "product_name", "category_name")) == [
        (1, "Kaos Merah", "Outer"), (2, "Topi Hitam", "Aksesoris"), (9, "Unknown", "Unknown")]
    assert rows(dm_product_ranking(lines, products).select("product_id", "product_name", "category_name")) == [
        (1, "Kaos Merah", "Outer"), (2, "Topi Hitam", "Aksesoris"), (9, "Unknown", "Unknown")]
    assert rows(dm_category_gender_monthly(lines, products, customers)) == [
        ("Aksesoris", "F", jan, 1, 1, 50), ("Outer", "F", jan, 1, 1, 100), ("Unknown", "Unknown", jan, 1, 1, 10)]
    assert rows(dm_basket_pairs(lines, products).select("style_a", "style_b", "orders_together")) == [
        ("Kaos Merah", "Topi Hitam", 1)]
    assert rows(dm_customer_rfm(lines, customers).select("customer_id", "full_name", "gender")) == [
        (7, "Ani", "F"), (8, "Unknown", "Unknown")]


def test_customer_rfm_segments(spark):
    # five customers: score = 1 + floor(5 * (rank - 1) / 5) = the rank, worst first, equal values sharing the
    # lowest rank; the latest order date is 2024-03-31
    #  id  orders  revenue  last order   recency  r  f  m  segment
    #   1     4     1000    2024-03-31       0    5  5  5  Champions
    #   2     3      100    2024-03-30       1    4  4  1  Loyal      (m too low for Champions)
    #   3     2      400    2024-02-01      59    2  3  4  At Risk
    #   4     1      300    2024-03-20      11    3  1  3  Potential  (one order, as 5: both rank 1 on orders)
    #   5     1      200    2024-01-05      86    1  1  2  Hibernating
    lines = spark.createDataFrame([
        (201, d(2024, 1, 10), 1, 11, 11, 2, 300),
        (202, d(2024, 2, 10), 1, 11, 11, 1, 300),
        (203, d(2024, 3, 1), 1, 11, 11, 1, 200),
        (204, d(2024, 3, 31), 1, 11, 11, 1, 200),
        (205, d(2024, 2, 20), 2, 11, 11, 1, 20),
        (206, d(2024, 3, 10), 2, 11, 11, 1, 30),
        (207, d(2024, 3, 30), 2, 11, 11, 1, 50),
        (208, d(2024, 1, 15), 3, 11, 11, 1, 200),
        (209, d(2024, 2, 1), 3, 11, 11, 1, 200),
        (210, d(2024, 3, 20), 4, 11, 11, 1, 300),
        (211, d(2024, 1, 5), 5, 11, 11, 1, 200),
    ], LINES_DDL)
    dim_customer = spark.createDataFrame([
        (-1, None, "Unknown", "Unknown", True),
        (1, 1, "Ani Lestari", "Female", True),
        (2, 2, "Budi Old", "Male", False),        # an old version: not the label
        (6, 2, "Budi Santoso", "Male", True),
        (3, 3, "Citra Dewi", "Female", True),
        (4, 4, "Dodi Pratama", "Male", True),     # customer 5 is not in the dimension
    ], CUSTOMER_DDL)
    out = dm_customer_rfm(lines, dim_customer)
    assert out.columns == ["customer_id", "full_name", "gender", "first_order_date", "last_order_date", "orders",
                           "units", "revenue", "recency_days", "r_score", "f_score", "m_score", "rfm_segment"]
    assert rows(out) == [
        (1, "Ani Lestari", "Female", date(2024, 1, 10), date(2024, 3, 31), 4, 5, 1000, 0, 5, 5, 5, "Champions"),
        (2, "Budi Santoso", "Male", date(2024, 2, 20), date(2024, 3, 30), 3, 3, 100, 1, 4, 4, 1, "Loyal"),
        (3, "Citra Dewi", "Female", date(2024, 1, 15), date(2024, 2, 1), 2, 2, 400, 59, 2, 3, 4, "At Risk"),
        (4, "Dodi Pratama", "Male", date(2024, 3, 20), date(2024, 3, 20), 1, 1, 300, 11, 3, 1, 3, "Potential"),
        (5, "Unknown", "Unknown", date(2024, 1, 5), date(2024, 1, 5), 1, 1, 200, 86, 1, 1, 2, "Hibernating"),
    ]


def test_customer_rfm_equal_values_get_equal_scores(spark):
    # six customers, one order each on the same day (r and f: everyone ties, rank 1, score 1); revenue
    # 100, 100, 200, 300, 300, 300: ranks 1, 1, 3, 4, 4, 4, so m = 1 + floor(5 * (rank - 1) / 6) = 1, 1, 2, 3, 3, 3
    revenue = {1: 100, 2: 100, 3: 200, 4: 300, 5: 300, 6: 300}
    lines = spark.createDataFrame([(300 + c, d(2024, 3, 1), c, 11, 11, 1, r) for c, r in revenue.items()],
                                  LINES_DDL)
    out = dm_customer_rfm(lines, spark.createDataFrame([(-1, None, "Unknown", "Unknown", True)], CUSTOMER_DDL))
    assert rows(out.select("customer_id", "r_score", "f_score", "m_score")) == [
        (1, 1, 1, 1), (2, 1, 1, 1), (3, 1, 1, 2), (4, 1, 1, 3), (5, 1, 1, 3), (6, 1, 1, 3)]
