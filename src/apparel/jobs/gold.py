"""Gold build: the datamarts at ``<lakehouse>/gold/<table>``, from the silver facts and dimensions.

Inputs: ``silver.fct_order_lines``, ``silver.dim_product``, ``silver.dim_customer``, ``silver.dim_location``.
Outputs: the eight ``dm_*`` tables (grains in :mod:`apparel.gold`), each replaced in one Delta commit.
"""

from __future__ import annotations

import argparse
import sys

from apparel.catalog import Catalog
from apparel.config import Settings
from apparel.errors import SourceError
from apparel.gold import build_marts
from apparel.runtime import run_job

INPUTS = ["silver.fct_order_lines", "silver.dim_product", "silver.dim_customer", "silver.dim_location"]


class GoldBuild:
    def __init__(self, spark, settings: Settings, log=print):
        self.spark = spark
        self.catalog = Catalog(settings)
        self.threads = int(settings.spark.get("write_threads", 4))
        self.log = log

    def run(self) -> dict[str, int]:
        missing = [n for n in INPUTS if not self.catalog.exists(self.spark, n)]
        if missing:
            raise SourceError(f"{', '.join(missing)} not built yet: run the silver layer first")
        lines, dim_product, dim_customer, dim_location = (self.catalog.read(self.spark, n) for n in INPUTS)
        lines = lines.localCheckpoint()
        self.log("[gold] building the datamarts")
        marts = {f"gold.{t}": df for t, df in build_marts(lines, dim_product, dim_customer, dim_location).items()}
        commits = self.catalog.overwrite_all(marts, threads=self.threads)
        written = {name: c["rows"] for name, c in commits.items()}
        for name, n in written.items():
            self.log(f"  {name:<33} {n:>7,} rows")
        return written


def main(argv: list[str] | None = None) -> int:
    """spark-submit entry point: ``gold_build.py [--run-date YYYY-MM-DD] [--env ENV]``."""
    parser = argparse.ArgumentParser(prog="gold_build", description=__doc__.splitlines()[0])
    parser.add_argument("--env", default=None)
    parser.add_argument("--run-date", default=None, help="logical date; accepted like every job's, the marts cover all history")
    args = parser.parse_args(argv)

    def body(spark, settings):
        from apparel.jobs.silver import accounting_lines

        GoldBuild(spark, settings).run()
        print("the marts are built on the latest silver run:")
        for line in accounting_lines(spark, Catalog(settings)):
            print(line)

    return run_job(body, env=args.env, app_name="apparel-gold")


if __name__ == "__main__":
    sys.exit(main())
