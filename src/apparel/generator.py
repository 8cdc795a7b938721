"""Deterministic generator of a sample "Django Apparel" online clothing store dataset.

The real source dataset (handed over with the project brief) must not be committed to
the repository, yet tests, demos and benchmarks need data with exactly the same shape.
This module writes seven files with the same names, file formats, sheet names, columns
and pandas dtypes as the real hand-over:

=========================  ==============================================================
file                       content
=========================  ==============================================================
provinces.xlsx             sheet ``Sheet1``: province_id, province_names (11, fixed)
cities.xlsx                sheet ``Worksheet``: city_id, city_names, province_id (222,
                           fixed: the real kabupaten/kota of those provinces)
customers.parquet          customer_id, first_name, last_name, gender (200 x scale)
products.json              pandas "columns" orient: product_id, product_name, size,
                           price, product_category_id (43, fixed)
product_categories.json    pandas "columns" orient: product_category_id,
                           product_category_name (2, fixed)
orders.csv                 order_id, order_date, customer_id, province_id, city_id
                           (7,000 x scale)
order_details.csv          order_detail_id, order_id, product_id, qty, item_price,
                           unit_sales (~2.6 lines per order)
=========================  ==============================================================

All names (people, products) come from lists written here; provinces and their
kabupaten/kota are public administrative facts. The data is realistic rather than
uniform: orders follow seasonal and weekly/payday patterns over 2022, some customers
buy far more than others, Java's provinces dominate, men and women lean towards the
matching fashion category, and most order lines have a quantity of one.

Output is a pure function of ``(scale, seed)``: every random draw comes from one
``numpy.random.default_rng(seed)`` stream in a fixed order and no wall-clock time is
used, so CSV/JSON files are byte-identical across runs and the xlsx/parquet files hold
identical data (their containers carry library timestamps). Everything per order is
vectorised, so ``scale=10`` (70,000 orders) takes well under a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["generate", "BASE_CUSTOMERS", "BASE_ORDERS", "YEAR"]

BASE_CUSTOMERS = 200
BASE_ORDERS = 7_000
YEAR = 2022
FIRST_ORDER_DETAIL_ID = 10_000

# --------------------------------------------------------------------------------------
# Geography: province name, relative share of orders (roughly population x online
# shopping intensity), and its kabupaten (regencies) and kota (cities).
# --------------------------------------------------------------------------------------
_GEOGRAPHY: list[tuple[str, float, list[str], list[str]]] = [
    (
        "BALI",
        4.0,
        ["BADUNG", "BANGLI", "BULELENG", "GIANYAR", "JEMBRANA", "KARANGASEM",
         "KLUNGKUNG", "TABANAN"],
        ["DENPASAR"],
    ),
    (
        "DKI JAKARTA",
        9.0,
        ["KEPULAUAN SERIBU"],
        ["JAKARTA BARAT", "JAKARTA PUSAT", "JAKARTA SELATAN", "JAKARTA TIMUR",
         "JAKARTA UTARA"],
    ),
    (
        "JAWA BARAT",
        20.0,
        ["BANDUNG", "BANDUNG BARAT", "BEKASI", "BOGOR", "CIAMIS", "CIANJUR", "CIREBON",
         "GARUT", "INDRAMAYU", "KARAWANG", "KUNINGAN", "MAJALENGKA", "PANGANDARAN",
         "PURWAKARTA", "SUBANG", "SUKABUMI", "SUMEDANG", "TASIKMALAYA"],
        ["BANDUNG", "BANJAR", "BEKASI", "BOGOR", "CIMAHI", "CIREBON", "DEPOK",
         "SUKABUMI", "TASIKMALAYA"],
    ),
    (
        "JAWA TENGAH",
        15.0,
        ["BANJARNEGARA", "BANYUMAS", "BATANG", "BLORA", "BOYOLALI", "BREBES", "CILACAP",
         "DEMAK", "GROBOGAN", "JEPARA", "KARANGANYAR", "KEBUMEN", "KENDAL", "KLATEN",
         "KUDUS", "MAGELANG", "PATI", "PEKALONGAN", "PEMALANG", "PURBALINGGA",
         "PURWOREJO", "REMBANG", "SEMARANG", "SRAGEN", "SUKOHARJO", "TEGAL",
         "TEMANGGUNG", "WONOGIRI", "WONOSOBO"],
        ["MAGELANG", "PEKALONGAN", "SALATIGA", "SEMARANG", "SURAKARTA", "TEGAL"],
    ),
    (
        "JAWA TIMUR",
        17.0,
        ["BANGKALAN", "BANYUWANGI", "BLITAR", "BOJONEGORO", "BONDOWOSO", "GRESIK",
         "JEMBER", "JOMBANG", "KEDIRI", "LAMONGAN", "LUMAJANG", "MADIUN", "MAGETAN",
         "MALANG", "MOJOKERTO", "NGANJUK", "NGAWI", "PACITAN", "PAMEKASAN", "PASURUAN",
         "PONOROGO", "PROBOLINGGO", "SAMPANG", "SIDOARJO", "SITUBONDO", "SUMENEP",
         "TRENGGALEK", "TUBAN", "TULUNGAGUNG"],
        ["BATU", "BLITAR", "KEDIRI", "MADIUN", "MALANG", "MOJOKERTO", "PASURUAN",
         "PROBOLINGGO", "SURABAYA"],
    ),
    (
        "KALIMANTAN SELATAN",
        4.0,
        ["BALANGAN", "BANJAR", "BARITO KUALA", "HULU SUNGAI SELATAN",
         "HULU SUNGAI TENGAH", "HULU SUNGAI UTARA", "KOTABARU", "TABALONG",
         "TANAH BUMBU", "TANAH LAUT", "TAPIN"],
        ["BANJARBARU", "BANJARMASIN"],
    ),
    (
        "KALIMANTAN TENGAH",
        3.0,
        ["BARITO SELATAN", "BARITO TIMUR", "BARITO UTARA", "GUNUNG MAS", "KAPUAS",
         "KATINGAN", "KOTAWARINGIN BARAT", "KOTAWARINGIN TIMUR", "LAMANDAU",
         "MURUNG RAYA", "PULANG PISAU", "SERUYAN", "SUKAMARA"],
        ["PALANGKA RAYA"],
    ),
    (
        "PAPUA BARAT",
        2.0,
        ["FAKFAK", "KAIMANA", "MANOKWARI", "MANOKWARI SELATAN", "MAYBRAT",
         "PEGUNUNGAN ARFAK", "RAJA AMPAT", "SORONG", "SORONG SELATAN", "TAMBRAUW",
         "TELUK BINTUNI", "TELUK WONDAMA"],
        ["SORONG"],
    ),
    (
        "SULAWESI UTARA",
        3.0,
        ["BOLAANG MONGONDOW", "BOLAANG MONGONDOW SELATAN", "BOLAANG MONGONDOW TIMUR",
         "BOLAANG MONGONDOW UTARA", "KEPULAUAN SANGIHE",
         "KEPULAUAN SIAU TAGULANDANG BIARO", "KEPULAUAN TALAUD", "MINAHASA",
         "MINAHASA SELATAN", "MINAHASA TENGGARA", "MINAHASA UTARA"],
        ["BITUNG", "KOTAMOBAGU", "MANADO", "TOMOHON"],
    ),
    (
        "SUMATERA BARAT",
        6.0,
        ["AGAM", "DHARMASRAYA", "KEPULAUAN MENTAWAI", "LIMA PULUH KOTA",
         "PADANG PARIAMAN", "PASAMAN", "PASAMAN BARAT", "PESISIR SELATAN", "SIJUNJUNG",
         "SOLOK", "SOLOK SELATAN", "TANAH DATAR"],
        ["BUKITTINGGI", "PADANG", "PADANG PANJANG", "PARIAMAN", "PAYAKUMBUH",
         "SAWAHLUNTO", "SOLOK"],
    ),
    (
        "SUMATERA UTARA",
        10.0,
        ["ASAHAN", "BATU BARA", "DAIRI", "DELI SERDANG", "HUMBANG HASUNDUTAN", "KARO",
         "LABUHANBATU", "LABUHANBATU SELATAN", "LABUHANBATU UTARA", "LANGKAT",
         "MANDAILING NATAL", "NIAS", "NIAS BARAT", "NIAS SELATAN", "NIAS UTARA",
         "PADANG LAWAS", "PADANG LAWAS UTARA", "PAKPAK BHARAT", "SAMOSIR",
         "SERDANG BEDAGAI", "SIMALUNGUN", "TAPANULI SELATAN", "TAPANULI TENGAH",
         "TAPANULI UTARA", "TOBA"],
        ["BINJAI", "GUNUNGSITOLI", "MEDAN", "PADANGSIDIMPUAN", "PEMATANGSIANTAR",
         "SIBOLGA", "TANJUNGBALAI", "TEBING TINGGI"],
    ),
]

# Urban kota order online more often than rural kabupaten.
_KOTA_BOOST = 2.5

# --------------------------------------------------------------------------------------
# People.
# --------------------------------------------------------------------------------------
_MALE_FIRST = [
    "Agus", "Ahmad", "Andi", "Arief", "Bagus", "Bambang", "Bayu", "Budi", "Dani",
    "Dedi", "Denny", "Dimas", "Eko", "Fajar", "Farhan", "Ferry", "Galih", "Gilang",
    "Hendra", "Heru", "Ilham", "Irfan", "Joko", "Kevin", "Lukman", "Made", "Nanda",
    "Nyoman", "Oka", "Putu", "Raka", "Reza", "Rizky", "Rudi", "Satria", "Slamet",
    "Teguh", "Toni", "Wahyu", "Wayan", "Yoga", "Yudha",
]
_FEMALE_FIRST = [
    "Ayu", "Bunga", "Citra", "Dewi", "Dian", "Dina", "Eka", "Fitri", "Gita", "Hana",
    "Indah", "Intan", "Kartika", "Kadek", "Lestari", "Lina", "Maya", "Mega", "Nadia",
    "Nia", "Novi", "Nur", "Putri", "Ratna", "Rina", "Rini", "Sari", "Sinta", "Siti",
    "Tari", "Tika", "Utami", "Vina", "Wulan", "Yanti", "Yuni", "Zahra", "Anisa",
    "Bella", "Cahya", "Desi", "Evi",
]
_LAST_NAMES = [
    "Gunawan", "Halim", "Harahap", "Hartono", "Hidayat", "Hutapea", "Kurniawan",
    "Kusuma", "Lubis", "Manurung", "Nasution", "Pangaribuan", "Pratama", "Purba",
    "Rangkuti", "Saputra", "Sembiring", "Setiawan", "Siregar", "Simanjuntak",
    "Sinaga", "Situmorang", "Susanto", "Tanjung", "Tarigan", "Wibowo", "Wijaya",
    "Ginting", "Daulay", "Sitompul", "Lumentut", "Rumondor", "Sumampouw", "Mokoginta",
    "Putra", "Santoso", "Suryadi", "Permana", "Nugroho", "Hakim", "Syahputra",
    "Anggraini", "Rahman", "Firmansyah", "Maulana", "Ramadhan", "Utomo", "Prasetyo",
]

# --------------------------------------------------------------------------------------
# Catalogue.
# --------------------------------------------------------------------------------------
_CATEGORIES = {1: "Mens Fashion", 2: "Womens Fashion"}
_SIZES = ["M", "L", "XL"]
# type -> (colours, popularity, {size: (lowest, highest) price in rupiah})
_PRODUCT_TYPES: dict[str, tuple[list[str], float, dict[str, tuple[int, int]]]] = {
    "Hoodie": (["Black", "White"], 1.0,
               {"M": (180_000, 185_000), "L": (185_000, 195_000), "XL": (195_000, 200_000)}),
    "Jeans": (["Black", "Blue"], 0.7,
              {"M": (200_000, 400_000), "L": (225_000, 450_000), "XL": (250_000, 500_000)}),
    "Sweater": (["Black", "White"], 1.0,
                {"M": (125_000, 130_000), "L": (130_000, 140_000), "XL": (140_000, 150_000)}),
    "T-shirt": (["Black", "White"], 1.4,
                {"M": (30_000, 40_000), "L": (40_000, 50_000), "XL": (50_000, 60_000)}),
}
N_PRODUCTS = 43  # every type x colour x size x category combination (48), less five
PRICE_STEP = 5_000
# A customer buys from the category matching their gender this much more often.
_CATEGORY_AFFINITY = 2.0

# --------------------------------------------------------------------------------------
# Order shape.
# --------------------------------------------------------------------------------------
# Seasonality over the year: Ramadan/Lebaran shopping (April 2022), 9.9-12.12 sales,
# year-end holidays; February is short and quiet.
_MONTH_WEIGHT = np.array([0.95, 0.85, 0.95, 1.25, 1.0, 0.9, 0.95, 1.0, 1.0, 1.0, 1.15, 1.3])
_WEEKEND_BOOST = 1.15
_PAYDAY_BOOST = 1.2  # from the 25th to the 2nd of the next month
_DOUBLE_DATE_BOOST = 2.5  # "9.9", "10.10", ... flash-sale days
# P(order has 1..6 lines): mean ~2.59 lines per order.
LINES_P = np.array([0.29, 0.23, 0.22, 0.145, 0.09, 0.025])
# P(qty = 1..6).
QTY_P = np.array([0.61, 0.28, 0.10, 0.006, 0.003, 0.001])
_ORDER_CHUNK = 100_000  # bounds the (orders x products) matrix used to pick lines


def _scaled(base: int, scale: float) -> int:
    """``base * scale`` rounded, but never fewer than one row."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    return max(1, int(round(base * scale)))


def _provinces() -> pd.DataFrame:
    return pd.DataFrame({
        "province_id": np.arange(1, len(_GEOGRAPHY) + 1, dtype=np.int64),
        "province_names": [name for name, _, _, _ in _GEOGRAPHY],
    })


def _cities() -> pd.DataFrame:
    names: list[str] = []
    province_ids: list[int] = []
    for province_id, (_, _, kabupaten, kota) in enumerate(_GEOGRAPHY, start=1):
        # Sorted within the province: all KABUPATEN first, then KOTA.
        for name in sorted(f"KABUPATEN {k}" for k in kabupaten) + sorted(f"KOTA {k}" for k in kota):
            names.append(name)
            province_ids.append(province_id)
    return pd.DataFrame({
        "city_id": np.arange(1, len(names) + 1, dtype=np.int64),
        "city_names": names,
        "province_id": np.array(province_ids, dtype=np.int64),
    })


def _product_categories() -> pd.DataFrame:
    return pd.DataFrame({
        "product_category_id": np.array(list(_CATEGORIES), dtype=np.int64),
        "product_category_name": list(_CATEGORIES.values()),
    })


def _products(rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """The catalogue and each product's popularity weight (aligned with its rows)."""
    rows: list[tuple[str, str, int, int, float]] = []
    for type_name, (colours, popularity, price_range) in _PRODUCT_TYPES.items():
        for category_id in _CATEGORIES:
            # Each (type, category) is one "line" placed somewhere in the type's price
            # band, the same relative place for every size, so bigger sizes cost more.
            position = rng.random()
            for size in _SIZES:
                low, high = price_range[size]
                price = low + round(position * (high - low) / PRICE_STEP) * PRICE_STEP
                for colour in colours:
                    rows.append((f"{type_name} {colour}", size, price, category_id, popularity))
    # Drop a few combinations so the catalogue is not a perfect grid (as in a real shop).
    keep = np.sort(rng.choice(len(rows), size=N_PRODUCTS, replace=False))
    size_rank = {s: i for i, s in enumerate(_SIZES)}
    # Catalogue order: type, size (M, L, XL), colour, category.
    chosen = sorted(
        (rows[i] for i in keep),
        key=lambda r: (r[0].split()[0], size_rank[r[1]], r[0], r[3]),
    )
    frame = pd.DataFrame(
        chosen, columns=["product_name", "size", "price", "product_category_id", "w"]
    )
    frame.insert(0, "product_id", np.arange(1, len(frame) + 1, dtype=np.int64))
    frame = frame.astype({"price": np.int64, "product_category_id": np.int64})
    # Individual products also vary a little in how well they sell.
    weights = frame.pop("w").to_numpy() * rng.lognormal(0.0, 0.25, size=len(frame))
    return frame, weights


def _customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    n_male = n // 2
    genders = np.array(["Male"] * n_male + ["Female"] * (n - n_male), dtype=object)
    genders = genders[rng.permutation(n)]
    first = np.empty(n, dtype=object)
    last = np.empty(n, dtype=object)
    n_last = len(_LAST_NAMES)
    for gender, pool in (("Male", _MALE_FIRST), ("Female", _FEMALE_FIRST)):
        idx = np.flatnonzero(genders == gender)
        combos = len(pool) * n_last
        # Distinct full names while the name lists allow it.
        picks = rng.choice(combos, size=len(idx), replace=len(idx) > combos)
        first[idx] = np.array(pool, dtype=object)[picks // n_last]
        last[idx] = np.array(_LAST_NAMES, dtype=object)[picks % n_last]
    return pd.DataFrame({
        "customer_id": np.arange(1, n + 1, dtype=np.int64),
        "first_name": first,
        "last_name": last,
        "gender": genders,
    })


def _day_weights(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Every day of ``YEAR`` and its relative share of orders."""
    days = np.arange(f"{YEAR}-01-01", f"{YEAR + 1}-01-01", dtype="datetime64[D]")
    month_start = days.astype("datetime64[M]")
    month = month_start.astype(np.int64) % 12 + 1
    day_of_month = (days - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    days_in_month = np.bincount(month)[month]
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    w = _MONTH_WEIGHT[month - 1] / days_in_month
    w = w * np.where(weekday >= 5, _WEEKEND_BOOST, 1.0)
    w = w * np.where((day_of_month >= 25) | (day_of_month <= 2), _PAYDAY_BOOST, 1.0)
    w = w * np.where(day_of_month == month, _DOUBLE_DATE_BOOST, 1.0)
    w = w * rng.lognormal(0.0, 0.15, size=len(days))  # day-to-day noise
    return days, w / w.sum()


def _orders(
    rng: np.random.Generator, n: int, customers: pd.DataFrame, cities: pd.DataFrame
) -> pd.DataFrame:
    # Dates: sampled from the daily weights, sorted so order_id follows time.
    days, day_p = _day_weights(rng)
    order_days = days[np.sort(rng.choice(len(days), size=n, p=day_p))]
    dates = np.char.add(np.datetime_as_string(order_days, unit="D").astype("U10"), " 00:00:00.000")

    # Places: province share x (kota boost x noise) within the province. Picking the city
    # and taking its province keeps the pair consistent.
    province_w = np.array([share for _, share, _, _ in _GEOGRAPHY])
    province_w = province_w * rng.lognormal(0.0, 0.15, len(_GEOGRAPHY))
    city_prov = cities["province_id"].to_numpy() - 1
    is_kota = cities["city_names"].str.startswith("KOTA ").to_numpy()
    city_w = np.where(is_kota, _KOTA_BOOST, 1.0) * rng.lognormal(0.0, 0.7, len(cities))
    city_w = city_w / np.bincount(city_prov, weights=city_w)[city_prov] * province_w[city_prov]
    city_idx = rng.choice(len(cities), size=n, p=city_w / city_w.sum())

    # Customers: heavy-tailed loyalty, so a few customers place many orders.
    cust_w = rng.lognormal(0.0, 0.7, size=len(customers))
    cust_idx = rng.choice(len(customers), size=n, p=cust_w / cust_w.sum())

    return pd.DataFrame({
        "order_id": np.arange(1, n + 1, dtype=np.int64),
        "order_date": dates.astype(object),
        "customer_id": customers["customer_id"].to_numpy()[cust_idx],
        "province_id": cities["province_id"].to_numpy()[city_idx],
        "city_id": cities["city_id"].to_numpy()[city_idx],
    })


def _order_details(
    rng: np.random.Generator,
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    products: pd.DataFrame,
    product_w: np.ndarray,
) -> pd.DataFrame:
    n_orders = len(orders)
    n_products = len(products)
    max_lines = len(LINES_P)
    n_lines = rng.choice(np.arange(1, max_lines + 1), size=n_orders, p=LINES_P)

    # Per-order product weights: popularity x affinity between the buyer's gender and
    # the product's category (category 1 = men, 2 = women).
    is_female = (customers["gender"].to_numpy() == "Female")[orders["customer_id"].to_numpy() - 1]
    is_womens = products["product_category_id"].to_numpy() == 2
    affinity = np.where(is_female[:, None] == is_womens[None, :], _CATEGORY_AFFINITY, 1.0)

    # Weighted sampling without replacement for all orders at once: give every product
    # an exponential "arrival time" with rate = its weight; the first k to arrive are
    # k distinct products drawn proportionally to weight (Efraimidis-Spirakis).
    picked = np.empty((n_orders, max_lines), dtype=np.int64)
    for start in range(0, n_orders, _ORDER_CHUNK):
        stop = min(start + _ORDER_CHUNK, n_orders)
        rate = product_w * affinity[start:stop]
        arrival = rng.exponential(size=(stop - start, n_products)) / rate
        picked[start:stop] = np.argsort(arrival, axis=1, kind="stable")[:, :max_lines]

    mask = np.arange(max_lines)[None, :] < n_lines[:, None]
    product_idx = picked[mask]  # row-major: grouped by order, in order_id order
    order_ids = np.repeat(orders["order_id"].to_numpy(), n_lines)
    qty = rng.choice(np.arange(1, len(QTY_P) + 1, dtype=np.int64), size=len(product_idx), p=QTY_P)
    item_price = products["price"].to_numpy()[product_idx]
    first_id = FIRST_ORDER_DETAIL_ID
    return pd.DataFrame({
        "order_detail_id": np.arange(first_id, first_id + len(product_idx), dtype=np.int64),
        "order_id": order_ids.astype(np.int64),
        "product_id": products["product_id"].to_numpy()[product_idx],
        "qty": qty,
        "item_price": item_price,
        "unit_sales": qty * item_price,
    })


def _write_text(path: Path, text: str) -> None:
    # newline="" so the bytes are the same on every platform.
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def generate(out_dir: str | Path, scale: float = 1.0, seed: int = 7) -> dict[str, int]:
    """Write the seven dataset files into ``out_dir`` and return ``{table: row_count}``.

    ``scale`` multiplies the number of customers (200) and orders (7,000); provinces,
    cities, products and categories are fixed. The same ``(scale, seed)`` always
    produces the same data.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    provinces = _provinces()
    cities = _cities()
    categories = _product_categories()
    products, product_w = _products(rng)
    customers = _customers(rng, _scaled(BASE_CUSTOMERS, scale))
    orders = _orders(rng, _scaled(BASE_ORDERS, scale), customers, cities)
    details = _order_details(rng, orders, customers, products, product_w)

    provinces.to_excel(out / "provinces.xlsx", sheet_name="Sheet1", index=False, engine="openpyxl")
    cities.to_excel(out / "cities.xlsx", sheet_name="Worksheet", index=False, engine="openpyxl")
    customers.to_parquet(out / "customers.parquet", index=False, engine="pyarrow")
    _write_text(out / "products.json", products.to_json(orient="columns"))
    _write_text(out / "product_categories.json", categories.to_json(orient="columns"))
    _write_text(out / "orders.csv", orders.to_csv(index=False, lineterminator="\n"))
    _write_text(out / "order_details.csv", details.to_csv(index=False, lineterminator="\n"))

    return {
        "provinces": len(provinces),
        "cities": len(cities),
        "customers": len(customers),
        "products": len(products),
        "product_categories": len(categories),
        "orders": len(orders),
        "order_details": len(details),
    }
