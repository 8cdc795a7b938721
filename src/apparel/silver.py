"""Silver transformations: dimensions and facts, as pure DataFrame -> DataFrame functions.

Grains:
- ``dim_date``: one row per calendar day covering every order date (+ the unknown day, key -1).
- ``dim_customer``: one row per customer version (SCD type 2 on first_name, last_name, gender).
- ``dim_product``: one row per product version (SCD type 2 on name, size, price and category).
- ``dim_location``: one row per city.
- ``fct_order_lines``: one row per order line, keyed by (order_id, order_detail_id).
- ``fct_orders``: one row per order.

Every dimension has an "Unknown" member with key -1; a foreign key that does not resolve points at it.
A new natural key's first version is valid from 1900-01-01, so orders placed before the customer or
product was first seen still resolve; a change closes the current version on the run date.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from apparel.spark import local_frame

UNKNOWN_KEY = -1
UNKNOWN = "Unknown"
OPEN_FROM = date(1900, 1, 1)
OPEN_TO = date(9999, 12, 31)
SCD_COLUMNS = ["valid_from", "valid_to", "is_current"]


def _date(value: date) -> Column:
    return F.lit(value).cast("date")


def _with_row(df: DataFrame, values: tuple) -> DataFrame:
    """``df`` plus one literal row (the unknown member), every column nullable."""
    schema = T.StructType([T.StructField(f.name, f.dataType, True) for f in df.schema.fields])
    return df.unionByName(local_frame(df.sparkSession, [values], schema))


# --- attribute preparation --------------------------------------------------------------------------

def customer_attributes(customers: DataFrame) -> DataFrame:
    """Valid customers -> one row per customer_id with the dimension's attributes."""
    return customers.select(
        "customer_id", "first_name", "last_name",
        F.concat_ws(" ", "first_name", "last_name").alias("full_name"), "gender")


def product_attributes(products: DataFrame, categories: DataFrame) -> DataFrame:
    """Valid products + categories -> product attributes; ``_orphan_category`` marks an unknown category."""
    cats = categories.select(F.col("product_category_id").alias("_cat_id"),
                             F.col("product_category_name").alias("category_name"))
    joined = products.join(F.broadcast(cats), products["product_category_id"] == cats["_cat_id"], "left")
    name = F.trim(F.col("product_name"))
    return joined.select(
        "product_id", "product_name",
        F.split(name, " ", 2).getItem(0).alias("product_type"),
        # get() is null past the end (getItem raises under ANSI): a one-word name has no colour
        F.coalesce(F.get(F.split(name, " ", 2), 1), F.lit("")).alias("color"),
        "size", "price", "product_category_id",
        F.coalesce(F.col("category_name"), F.lit(UNKNOWN)).alias("category_name"),
        (F.col("_cat_id").isNull() & F.col("product_category_id").isNotNull()).alias("_orphan_category"),
    )


def city_type(name: Column) -> Column:
    first = F.upper(F.split(F.trim(name), " ").getItem(0))
    return F.when(first.isin("KABUPATEN", "KOTA"), first).otherwise(F.lit("UNKNOWN"))


def build_dim_location(cities: DataFrame, provinces: DataFrame) -> DataFrame:
    """Valid cities + provinces -> one row per city, plus the unknown city (-1); ``_orphan_province`` marks
    a city whose province is unknown."""
    prov = provinces.select(F.col("province_id").alias("_prov_id"), F.col("province_names").alias("province_name"))
    joined = cities.join(F.broadcast(prov), cities["province_id"] == prov["_prov_id"], "left")
    dim = joined.select(
        "city_id", F.col("city_names").alias("city_name"), city_type(F.col("city_names")).alias("city_type"),
        F.when(F.col("_prov_id").isNull(), F.lit(UNKNOWN_KEY)).otherwise(F.col("province_id")).alias("province_id"),
        F.coalesce(F.col("province_name"), F.lit(UNKNOWN)).alias("province_name"),
        F.col("_prov_id").isNull().alias("_orphan_province"),
    )
    return _with_row(dim, (UNKNOWN_KEY, UNKNOWN, "UNKNOWN", UNKNOWN_KEY, UNKNOWN, False))


def build_dim_province(provinces: DataFrame) -> DataFrame:
    """Valid provinces -> one row per province, plus the unknown province (-1): the names of the orders' own
    provinces (``dm_region_monthly``), a province no city names included."""
    dim = provinces.select("province_id", F.col("province_names").alias("province_name"))
    return _with_row(dim, (UNKNOWN_KEY, UNKNOWN))


def build_dim_date(order_dates: DataFrame) -> DataFrame:
    """One row per day from the first to the last order date (column ``order_date``), plus key -1."""
    bounds = order_dates.select(F.min(F.to_date("order_date")).alias("lo"), F.max(F.to_date("order_date")).alias("hi"))
    days = bounds.select(F.explode(F.sequence("lo", "hi")).alias("date")).where(F.col("date").isNotNull())
    d = F.col("date")
    dim = days.select(
        F.date_format(d, "yyyyMMdd").cast("int").alias("date_key"), d,
        F.year(d).alias("year"), F.quarter(d).alias("quarter"), F.month(d).alias("month"),
        F.date_format(d, "MMMM").alias("month_name"), F.dayofmonth(d).alias("day_of_month"),
        # ISO day of week: 1 = Monday ... 7 = Sunday
        (((F.dayofweek(d) + 5) % 7) + 1).alias("day_of_week"),
        F.dayofweek(d).isin(1, 7).alias("is_weekend"),
    )
    return _with_row(dim, (UNKNOWN_KEY, None, None, None, None, UNKNOWN, None, None, None))


# --- SCD type 2 -------------------------------------------------------------------------------------

def _fingerprint(cols: list[str]) -> Column:
    return F.sha2(F.concat_ws("\u0001", *[F.coalesce(F.col(c).cast("string"), F.lit("\u0000")) for c in cols]), 256)


def scd2_changes(current: DataFrame | None, incoming: DataFrame, natural_key: str, surrogate_key: str,
                 tracked: list[str], effective: date) -> DataFrame:
    """What a load of ``incoming`` changes in an SCD2 dimension: the staged updates of a Delta MERGE.

    ``current``: the dimension as stored (None or empty on the first load); ``incoming``: one row per natural
    key with the attribute columns. One row per change, with the dimension's columns plus ``_action``:

    - ``close``: the current version of a changed key, its ``valid_to`` set to the effective date, or to its own
      ``valid_from`` when that is later (a run dated before the version opened: ``_out_of_order`` is true, and
      the later version is closed, never rewritten);
    - ``correct``: the current version opened on the effective date itself gets the new attributes in place;
    - ``insert``: a new version (after a ``close``) or a new key's first version, valid from 1900-01-01.

    Unchanged and vanished keys have no row. New surrogate keys continue after the largest existing one, in
    natural-key order, so keys never move and a replay gives the same keys.
    """
    attrs = [c for c in incoming.columns if c != natural_key]
    out_cols = [surrogate_key, natural_key, *attrs, *SCD_COLUMNS]
    eff = _date(effective)
    if current is None:
        current = local_frame(incoming.sparkSession, [], _scd_schema(incoming, surrogate_key))
    current = current.where(F.col(surrogate_key) != UNKNOWN_KEY).select(*out_cols)
    open_rows = current.where(F.col("is_current"))

    inc = incoming.select(natural_key, *[F.col(a).alias(f"_in_{a}") for a in attrs],
                          _fingerprint(tracked).alias("_in_fp"))
    cur = open_rows.withColumn("_cur_fp", _fingerprint(tracked))
    j = cur.join(inc, natural_key, "right_outer")
    has_cur = F.col(surrogate_key).isNotNull()
    changed = has_cur & (F.col("_cur_fp") != F.col("_in_fp"))
    same_day = changed & (F.col("valid_from") == eff)
    late = changed & (F.col("valid_from") > eff)
    new_attrs = [F.col(f"_in_{a}").alias(a) for a in attrs]

    close = j.where(changed & ~same_day).select(
        surrogate_key, natural_key, *attrs, "valid_from", F.greatest(eff, F.col("valid_from")).alias("valid_to"),
        F.lit(False).alias("is_current"), F.lit("close").alias("_action"), late.alias("_out_of_order"))
    correct = j.where(same_day).select(
        surrogate_key, natural_key, *new_attrs, "valid_from", "valid_to", "is_current",
        F.lit("correct").alias("_action"), F.lit(False).alias("_out_of_order"))
    fresh = j.where((changed & ~same_day) | ~has_cur).select(
        natural_key, *new_attrs,
        F.when(has_cur, F.greatest(eff, F.col("valid_from"))).otherwise(_date(OPEN_FROM)).alias("valid_from"),
        _date(OPEN_TO).alias("valid_to"), F.lit(True).alias("is_current"))
    max_key = current.agg(F.coalesce(F.max(surrogate_key), F.lit(0)).alias("m"))
    numbered = fresh.crossJoin(max_key).withColumn(
        surrogate_key, (F.col("m") + F.row_number().over(Window.orderBy(natural_key))).cast("bigint"))
    insert = numbered.select(*out_cols, F.lit("insert").alias("_action"), F.lit(False).alias("_out_of_order"))
    return close.unionByName(correct).unionByName(insert)


def scd2_apply(current: DataFrame | None, changes: DataFrame, surrogate_key: str) -> DataFrame:
    """The dimension after ``changes`` (from :func:`scd2_changes`), as a DataFrame: what the Delta MERGE of the
    silver job writes, for tests and for a first load (without the unknown member)."""
    out_cols = [c for c in changes.columns if not c.startswith("_")]
    rows = changes.select(*out_cols)
    if current is None:
        return rows
    current = current.where(F.col(surrogate_key) != UNKNOWN_KEY).select(*out_cols)
    touched = changes.where(F.col("_action") != "insert").select(surrogate_key)
    return current.join(touched, surrogate_key, "left_anti").unionByName(rows)


def scd2_merge(current: DataFrame | None, incoming: DataFrame, natural_key: str, surrogate_key: str,
               tracked: list[str], effective: date) -> DataFrame:
    """The next version of an SCD2 dimension (without its unknown member): :func:`scd2_changes` applied to
    ``current``. Unchanged and vanished keys keep their rows; a changed key gets its current version closed
    on ``effective`` and a new current version with a new surrogate key (a version opened on ``effective``
    itself is corrected in place); a new key gets a first version from 1900-01-01."""
    return scd2_apply(current, scd2_changes(current, incoming, natural_key, surrogate_key, tracked, effective),
                      surrogate_key)


def _scd_schema(incoming: DataFrame, surrogate_key: str) -> str:
    fields = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in incoming.schema.fields)
    return f"{surrogate_key} BIGINT, {fields}, valid_from DATE, valid_to DATE, is_current BOOLEAN"


def with_unknown_member(dim: DataFrame, surrogate_key: str, labels: dict[str, object]) -> DataFrame:
    """Append the unknown member (key -1, natural key null, ``labels`` for text attributes)."""
    values = []
    for f in dim.schema.fields:
        if f.name == surrogate_key:
            values.append(UNKNOWN_KEY)
        elif f.name == "valid_from":
            values.append(OPEN_FROM)
        elif f.name == "valid_to":
            values.append(OPEN_TO)
        elif f.name == "is_current":
            values.append(True)
        else:
            values.append(labels.get(f.name))
    return _with_row(dim, tuple(values))


def resolve_version(facts: DataFrame, dim: DataFrame, natural_key: str, surrogate_key: str,
                    date_col: str = "order_date") -> DataFrame:
    """Add ``surrogate_key``: the dimension version valid on the fact's date, or -1 when none is."""
    versions = dim.where(F.col(surrogate_key) != UNKNOWN_KEY).select(
        F.col(natural_key).alias("_nk"), F.col(surrogate_key).alias("_sk"), "valid_from", "valid_to")
    day = F.to_date(facts[date_col])
    cond = (facts[natural_key] == versions["_nk"]) & (versions["valid_from"] <= day) & (day < versions["valid_to"])
    joined = facts.join(F.broadcast(versions), cond, "left")
    return joined.withColumn(surrogate_key, F.coalesce(F.col("_sk"), F.lit(UNKNOWN_KEY)).cast("bigint")) \
                 .drop("_nk", "_sk", "valid_from", "valid_to")


# --- facts ------------------------------------------------------------------------------------------

def resolve_orders(orders: DataFrame, dim_customer: DataFrame, dim_location: DataFrame,
                   province_ids: DataFrame) -> DataFrame:
    """Valid orders with ``date_key``, ``customer_key`` and resolved ``city_id``/``province_id`` (-1 when
    unknown), plus ``_orphan_customer``/``_orphan_city``/``_orphan_province`` flags and
    ``_city_province_mismatch`` (city and province both known, the city in another known province: the order
    keeps its own province)."""
    o = resolve_version(orders, dim_customer, "customer_id", "customer_key")
    cities = dim_location.where(F.col("city_id") != UNKNOWN_KEY).select(
        F.col("city_id").alias("_city"), F.col("province_id").alias("_city_prov"))
    provs = province_ids.select(F.col("province_id").alias("_prov")).distinct()
    o = o.join(F.broadcast(cities), o["city_id"] == cities["_city"], "left") \
         .join(F.broadcast(provs), o["province_id"] == provs["_prov"], "left")
    return o.select(
        "order_id", "order_date", F.date_format("order_date", "yyyyMMdd").cast("int").alias("date_key"),
        "customer_key", "customer_id",
        F.coalesce(F.col("_city"), F.lit(UNKNOWN_KEY)).cast("bigint").alias("city_id"),
        F.coalesce(F.col("_prov"), F.lit(UNKNOWN_KEY)).cast("bigint").alias("province_id"),
        (F.col("customer_key") == UNKNOWN_KEY).alias("_orphan_customer"),
        F.col("_city").isNull().alias("_orphan_city"),
        F.col("_prov").isNull().alias("_orphan_province"),
        (F.col("_city").isNotNull() & F.col("_prov").isNotNull() & (F.col("_city_prov") != UNKNOWN_KEY)
         & (F.col("_city_prov") != F.col("_prov"))).alias("_city_province_mismatch"),
    )


FCT_ORDER_LINES_COLUMNS = ["order_detail_id", "order_id", "order_date", "date_key", "customer_key", "customer_id",
                           "product_key", "product_id", "city_id", "province_id", "qty", "item_price",
                           "line_revenue", "order_month"]


def line_revenue() -> Column:
    """A fact line's revenue: quantity times the item price."""
    return F.col("qty") * F.col("item_price")


def build_fct_order_lines(lines: DataFrame, resolved_orders: DataFrame, dim_product: DataFrame) -> DataFrame:
    """Valid lines joined to their (resolved) order; ``_orphan_product`` marks an unknown product."""
    o = resolved_orders.select("order_id", "order_date", "date_key", "customer_key", "customer_id",
                               "city_id", "province_id")
    joined = lines.join(o, "order_id", "inner")
    joined = resolve_version(joined, dim_product, "product_id", "product_key")
    return joined.select(
        *[c for c in FCT_ORDER_LINES_COLUMNS if c not in ("line_revenue", "order_month")],
        line_revenue().alias("line_revenue"),
        F.trunc(F.to_date("order_date"), "month").alias("order_month"),
        (F.col("product_key") == UNKNOWN_KEY).alias("_orphan_product"),
    )


def build_fct_orders(resolved_orders: DataFrame, fct_lines: DataFrame) -> DataFrame:
    per_order = fct_lines.groupBy("order_id").agg(
        F.count(F.lit(1)).alias("lines"), F.sum("qty").alias("units"), F.sum("line_revenue").alias("order_revenue"))
    joined = resolved_orders.join(per_order, "order_id", "left")
    return joined.select(
        "order_id", "order_date", "date_key", "customer_key", "customer_id", "city_id", "province_id",
        F.coalesce("lines", F.lit(0)).cast("bigint").alias("lines"),
        F.coalesce("units", F.lit(0)).cast("bigint").alias("units"),
        F.coalesce("order_revenue", F.lit(0)).cast("bigint").alias("order_revenue"),
    )
