"""Gold datamarts, as pure functions of the silver facts and dimensions.

Money is whole rupiah (bigint); percentages are doubles from 0 to 100. "orders" counts distinct orders
with at least one line in ``fct_order_lines``. Grains:

- ``dm_sales_monthly``: one row per month.
- ``dm_product_monthly``: one row per product_id x month.
- ``dm_product_ranking``: one row per product_id, over all time.
- ``dm_region_monthly``: one row per province x city x month (the order's own province).
- ``dm_category_gender_monthly``: one row per current category x current gender x month.
- ``dm_customer_rfm``: one row per customer.
- ``dm_customer_cohorts``: one row per cohort month x months since the first order.
- ``dm_basket_pairs``: one row per unordered pair of product styles bought in the same order.
- ``dm_sales_live``: one row per minute of order time with at least one line, for the current and the previous
  day (lines at or after :func:`live_window_start` of "now"; later lines are kept).

Labels: every mart shows a product's and a customer's **current** attributes (the ``is_current`` version of
``dim_product`` and ``dim_customer``, by ``product_id`` and ``customer_id``; "Unknown" when there is none), so a
product that changed category moves, with its history, to the new category in every mart at once.

RFM segments (scores are quintiles 1-5, 5 best, equal values equal scores; the first rule that fits wins):
Champions r>=4, f>=4, m>=4 | Loyal f>=4, r>=3 | At Risk r<=2, f>=3 | Potential r>=3 | Hibernating otherwise.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from apparel.silver import UNKNOWN

RFM_SEGMENTS = [
    ("Champions", "r_score >= 4 AND f_score >= 4 AND m_score >= 4"),
    ("Loyal", "f_score >= 4 AND r_score >= 3"),
    ("At Risk", "r_score <= 2 AND f_score >= 3"),
    ("Potential", "r_score >= 3"),
    ("Hibernating", "true"),
]


def _month(col: str = "order_date") -> Column:
    return F.trunc(F.to_date(col), "month")


def _sales() -> list[Column]:
    return [F.countDistinct("order_id").alias("orders"), F.sum("qty").cast("bigint").alias("units"),
            F.sum("line_revenue").cast("bigint").alias("revenue")]


def current_products(dim_product: DataFrame) -> DataFrame:
    """One row per product_id: its current version's labels."""
    return dim_product.where("is_current AND product_key <> -1").select(
        "product_id", "product_name", "product_type", "color", "size", "category_name")


def dm_sales_monthly(lines: DataFrame) -> DataFrame:
    m = lines.groupBy(_month().alias("month")).agg(
        *_sales(), F.countDistinct("customer_id").alias("customers"))
    w = Window.orderBy("month")
    # the previous calendar month; after a month without sales there is nothing to compare with
    prev = F.when(F.lag("month").over(w) == F.add_months("month", -1), F.lag("revenue").over(w))
    return m.select(
        "month", "orders", "customers", "units", "revenue",
        F.round(F.col("revenue") / F.col("orders")).cast("bigint").alias("avg_order_value"),
        F.when(prev.isNull() | (prev == 0), F.lit(None).cast("double"))
         .otherwise((F.col("revenue") - prev) * 100.0 / prev).alias("revenue_mom_pct"),
    )


def _label_products(df: DataFrame, dim_product: DataFrame) -> DataFrame:
    labels = current_products(dim_product)
    out = df.join(F.broadcast(labels), "product_id", "left")
    for c in ("product_name", "product_type", "color", "size", "category_name"):
        out = out.withColumn(c, F.coalesce(F.col(c), F.lit(UNKNOWN)))
    return out


def dm_product_monthly(lines: DataFrame, dim_product: DataFrame) -> DataFrame:
    m = lines.groupBy("product_id", _month().alias("month")).agg(*_sales())
    return _label_products(m, dim_product).select(
        "product_id", "product_name", "product_type", "color", "size", "category_name", "month",
        "orders", "units", "revenue")


def dm_product_ranking(lines: DataFrame, dim_product: DataFrame) -> DataFrame:
    p = lines.groupBy("product_id").agg(F.sum("qty").cast("bigint").alias("units"),
                                        F.sum("line_revenue").cast("bigint").alias("revenue"))
    total = F.sum("revenue").over(Window.partitionBy())
    p = p.withColumn("revenue_share_pct", F.when(total != 0, F.col("revenue") * 100.0 / total)) \
         .withColumn("revenue_rank", F.row_number().over(Window.orderBy(F.desc("revenue"), F.asc("product_id"))))
    return _label_products(p, dim_product).select(
        "product_id", "product_name", "size", "category_name", "units", "revenue", "revenue_share_pct",
        "revenue_rank")


def dm_region_monthly(lines: DataFrame, dim_location: DataFrame, dim_province: DataFrame) -> DataFrame:
    """Revenue where the orders say they are: the order's own province (the fact's ``province_id``), and its
    city within it; an unknown city is the "Unknown" city of that province, and a city of another province
    stays under the order's province (silver warned ``city_province_mismatch``)."""
    m = lines.groupBy("province_id", "city_id", _month().alias("month")).agg(
        *_sales(), F.countDistinct("customer_id").alias("customers"))
    city = dim_location.select("city_id", "city_name", "city_type")
    prov = dim_province.select("province_id", "province_name")
    return m.join(F.broadcast(city), "city_id", "left").join(F.broadcast(prov), "province_id", "left").select(
        "month", "province_id", "province_name", "city_id", "city_name", "city_type",
        "orders", "customers", "units", "revenue")


def current_customers(dim_customer: DataFrame) -> DataFrame:
    """One row per customer_id: its current version's labels."""
    return dim_customer.where("is_current AND customer_key <> -1").select("customer_id", "full_name", "gender")


def dm_category_gender_monthly(lines: DataFrame, dim_product: DataFrame, dim_customer: DataFrame) -> DataFrame:
    """The current category of the product and the current gender of the customer ("Unknown" without one)."""
    prod = current_products(dim_product).select("product_id", "category_name")
    cust = current_customers(dim_customer).select("customer_id", "gender")
    j = lines.join(F.broadcast(prod), "product_id", "left").join(F.broadcast(cust), "customer_id", "left")
    j = j.withColumn("category_name", F.coalesce("category_name", F.lit(UNKNOWN))) \
         .withColumn("gender", F.coalesce("gender", F.lit(UNKNOWN)))
    return j.groupBy("category_name", "gender", _month().alias("month")).agg(
        F.countDistinct("customer_id").alias("customers"), F.sum("qty").cast("bigint").alias("units"),
        F.sum("line_revenue").cast("bigint").alias("revenue"))


def dm_customer_rfm(lines: DataFrame, dim_customer: DataFrame) -> DataFrame:
    per = lines.where(F.col("customer_id").isNotNull()).groupBy("customer_id").agg(
        F.min(F.to_date("order_date")).alias("first_order_date"),
        F.max(F.to_date("order_date")).alias("last_order_date"),
        *_sales())
    ref = lines.agg(F.max(F.to_date("order_date")).alias("_ref"))
    per = per.crossJoin(ref).withColumn("recency_days", F.datediff("_ref", "last_order_date")).drop("_ref")
    # quintiles, 5 the best, equal values equal scores: 1 + (rank - 1) * 5 DIV n, the rank worst first (ties
    # share the lowest rank) among the n customers
    everyone = F.count(F.lit(1)).over(Window.partitionBy())

    def score(order: Column) -> Column:
        rank = F.rank().over(Window.orderBy(order))
        return (F.floor((rank - 1) * 5 / everyone) + 1).cast("int")

    per = (per.withColumn("r_score", score(F.desc("recency_days"))).withColumn("f_score", score(F.asc("orders")))
              .withColumn("m_score", score(F.asc("revenue"))))
    segment = None
    for name, cond in RFM_SEGMENTS:
        segment = (F.when(F.expr(cond), name) if segment is None else segment.when(F.expr(cond), name))
    return per.join(F.broadcast(current_customers(dim_customer)), "customer_id", "left").select(
        "customer_id", F.coalesce("full_name", F.lit(UNKNOWN)).alias("full_name"),
        F.coalesce("gender", F.lit(UNKNOWN)).alias("gender"),
        "first_order_date", "last_order_date", "orders", "units", "revenue", "recency_days",
        "r_score", "f_score", "m_score", segment.alias("rfm_segment"))


def dm_customer_cohorts(lines: DataFrame) -> DataFrame:
    activity = lines.where(F.col("customer_id").isNotNull()).select("customer_id", _month().alias("month")).distinct()
    first = activity.groupBy("customer_id").agg(F.min("month").alias("cohort_month"))
    a = activity.join(first, "customer_id")
    a = a.withColumn("months_since_first", F.months_between("month", "cohort_month").cast("int"))
    sizes = first.groupBy("cohort_month").agg(F.count(F.lit(1)).alias("cohort_size"))
    active = a.groupBy("cohort_month", "months_since_first").agg(
        F.countDistinct("customer_id").alias("active_customers"))
    return active.join(sizes, "cohort_month").select(
        "cohort_month", "months_since_first", "cohort_size", "active_customers",
        (F.col("active_customers") * 100.0 / F.col("cohort_size")).alias("retention_pct"),
    )


def dm_basket_pairs(lines: DataFrame, dim_product: DataFrame) -> DataFrame:
    """Pairs of styles (the current product_name, ignoring size and category) bought in the same order. Lines of
    an unknown product have no style and take part in no pair; they still count in "all orders"."""
    styles = current_products(dim_product).select("product_id", F.col("product_name").alias("style"))
    all_orders = lines.agg(F.countDistinct("order_id").cast("double").alias("_all"))
    os_ = lines.join(F.broadcast(styles), "product_id", "inner").select("order_id", "style").distinct()
    per_style = os_.groupBy("style").agg(F.count(F.lit(1)).alias("n"))
    a, b = os_.alias("a"), os_.alias("b")
    pairs = a.join(b, (F.col("a.order_id") == F.col("b.order_id")) & (F.col("a.style") < F.col("b.style"))) \
             .groupBy(F.col("a.style").alias("style_a"), F.col("b.style").alias("style_b")) \
             .agg(F.count(F.lit(1)).alias("orders_together"))
    na = per_style.select(F.col("style").alias("style_a"), F.col("n").alias("orders_a"))
    nb = per_style.select(F.col("style").alias("style_b"), F.col("n").alias("orders_b"))
    p = pairs.join(na, "style_a").join(nb, "style_b").crossJoin(all_orders)
    total = F.col("_all")
    return p.select(
        "style_a", "style_b", "orders_together",
        (F.col("orders_together") / total).alias("support"),
        (F.col("orders_together") / F.col("orders_a")).alias("confidence_a_to_b"),
        (F.col("orders_together") / F.col("orders_b")).alias("confidence_b_to_a"),
        ((F.col("orders_together") / F.col("orders_a")) / (F.col("orders_b") / total)).alias("lift"),
    )


def live_window_start(now: datetime) -> datetime:
    """Start of ``dm_sales_live``'s window: midnight of the day before ``now``, naive like the facts' timestamps
    (an aware ``now`` is taken in UTC first)."""
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc).replace(tzinfo=None)
    return datetime(now.year, now.month, now.day) - timedelta(days=1)


def dm_sales_live(lines: DataFrame, window_start: datetime) -> DataFrame:
    """Sales per minute of order time of the lines at or after ``window_start`` (no upper bound: lines later than
    "now" are data too). Minutes without a line have no row. ``customers`` is distinct per minute."""
    start = F.to_timestamp(F.lit(window_start.isoformat(sep=" ")))  # read in the session time zone, like the facts
    m = lines.where(F.col("order_date") >= start).groupBy(F.date_trunc("minute", "order_date").alias("minute"))
    return m.agg(*_sales(), F.countDistinct("customer_id").alias("customers")).select(
        "minute", "orders", "units", "revenue", "customers")


def build_marts(lines: DataFrame, dim_product: DataFrame, dim_customer: DataFrame, dim_location: DataFrame,
                dim_province: DataFrame, only: list[str] | None = None) -> dict[str, DataFrame]:
    """The marts (all of them, or those named in ``only``) as plans over the given fact lines."""
    builders = {
        "dm_sales_monthly": lambda: dm_sales_monthly(lines),
        "dm_product_monthly": lambda: dm_product_monthly(lines, dim_product),
        "dm_product_ranking": lambda: dm_product_ranking(lines, dim_product),
        "dm_region_monthly": lambda: dm_region_monthly(lines, dim_location, dim_province),
        "dm_category_gender_monthly": lambda: dm_category_gender_monthly(lines, dim_product, dim_customer),
        "dm_customer_rfm": lambda: dm_customer_rfm(lines, dim_customer),
        "dm_customer_cohorts": lambda: dm_customer_cohorts(lines),
        "dm_basket_pairs": lambda: dm_basket_pairs(lines, dim_product),
    }
    return {name: build() for name, build in builders.items() if only is None or name in only}
