"""Crash points: named places where the crash tests (tests/integration/test_crash.py) hold a run so that they
can kill it with SIGKILL at a known moment, on local disk and on s3a:// alike (README, *Crash safety*).

Outside those tests ``APPAREL_CRASH_AT`` is unset and every function here returns at once. With
``APPAREL_CRASH_AT=<point>`` a run that reaches that point writes the point's name to the file named by
``APPAREL_CRASH_MARKER`` and then blocks until it is killed. The points:

- ``extracted:bronze.<table>``: bronze has read the table's new rows from the source (checkpointed and counted)
  and written nothing of them.
- ``writing:<layer>.<table>``: the table's commit is writing its data files. The rows are split in two Spark
  tasks: the first writes its file, the second holds (it writes the marker and blocks), so the table's folder holds
  a data file that no entry of its Delta log names. Overwrites and appends (not MERGEs) have this point.
- ``committed:<layer>.<table>``: the table's commit is in its Delta log; the run's later commits are not.

A point holds the thread (or the task) that reaches it; the run's other threads go on until the kill.
"""

from __future__ import annotations

import os
import time

ENV_POINT, ENV_MARKER = "APPAREL_CRASH_AT", "APPAREL_CRASH_MARKER"


def _target() -> str | None:
    return os.environ.get(ENV_POINT) or None


def _hold(point: str, marker: str | None) -> None:
    """Write ``point`` to ``marker`` and block until the process is killed."""
    if marker:
        with open(marker, "w") as f:
            f.write(point)
    while True:
        time.sleep(3600)


def reached(point: str) -> None:
    """Hold here when ``APPAREL_CRASH_AT`` names ``point``."""
    if _target() == point:
        _hold(point, os.environ.get(ENV_MARKER))


def writing(df, name: str):
    """``df``, or, when ``APPAREL_CRASH_AT`` is ``writing:<name>``, the same rows in two partitions whose second
    holds in its task before it yields a row (see the module's docstring)."""
    point = f"writing:{name}"
    if _target() != point:
        return df
    marker = os.environ.get(ENV_MARKER)

    def rows(index, it):
        if index == 1:
            _hold(point, marker)
        yield from it

    spark = df.sparkSession
    return spark.createDataFrame(df.repartition(2).rdd.mapPartitionsWithIndex(rows), df.schema)
