"""spark-submit entry point: build the silver layer.

    spark-submit spark_jobs/silver_build.py [--run-date YYYY-MM-DD] [--env ENV]

The logic lives in :mod:`apparel.jobs.silver`; this file only hands over the arguments.
"""

import sys

from apparel.jobs.silver import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
