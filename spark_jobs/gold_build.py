"""spark-submit entry point: build the gold layer.

    spark-submit spark_jobs/gold_build.py [--run-date YYYY-MM-DD] [--env ENV]

The logic lives in :mod:`apparel.jobs.gold`; this file only hands over the arguments.
"""

import sys

from apparel.jobs.gold import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
