"""spark-submit entry point: OPTIMIZE and VACUUM every lakehouse table.

    spark-submit spark_jobs/maintain.py [--retention-hours H] [--run-date YYYY-MM-DD] [--env ENV]

The logic lives in :mod:`apparel.jobs.maintain`; this file only hands over the arguments.
"""

import sys

from apparel.jobs.maintain import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
