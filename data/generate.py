"""Write a sample Django Apparel dataset.

    python data/generate.py --scale 1 --seed 7 --out DIR
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

try:
    from apparel.generator import generate
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from apparel.generator import generate

FILES = {
    "provinces": "provinces.xlsx",
    "cities": "cities.xlsx",
    "customers": "customers.parquet",
    "products": "products.json",
    "product_categories": "product_categories.json",
    "orders": "orders.csv",
    "order_details": "order_details.csv",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplier for customers (200) and orders (7,000); default 1")
    parser.add_argument("--seed", type=int, default=7, help="random seed; default 7")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "sample",
                        help="output folder; default data/sample")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    counts = generate(args.out, scale=args.scale, seed=args.seed)
    elapsed = time.perf_counter() - started
    for table, rows in counts.items():
        print(f"{FILES.get(table, table):<26}{rows:>10,} rows")
    print(f"wrote {args.out} in {elapsed:.2f}s (scale={args.scale:g}, seed={args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
