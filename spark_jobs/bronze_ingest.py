"""spark-submit entry point: land the source tables as bronze Delta tables.

    spark-submit spark_jobs/bronze_ingest.py [--group store|excel] [--run-date YYYY-MM-DD]

The logic lives in :mod:`apparel.jobs.bronze`; this file only hands over the arguments.
"""

import sys

from apparel.jobs.bronze import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
