"""What every job and the CLI share at run time: batch and run ids, the run date, one-line errors and the
spark-submit wrapper. Dependencies point one way: cli -> pipeline -> jobs -> runtime -> config/spark."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from contextlib import contextmanager
from datetime import date, datetime
from typing import Callable
from uuid import uuid4

from apparel.config import load_settings
from apparel.errors import ApparelError, SourceError


def new_batch_id(now: datetime) -> str:
    """A sortable, unique id for a bronze batch or a silver run: ``YYYYmmddTHHMMSSZ-<6 hex>``."""
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid4().hex[:6]}"


class Steps:
    """Wall-clock seconds per named step of a run, summed over repeats: ``with steps("contract"): ...``.
    The stream reports them per micro-batch (``apparel stream status``), so a slow step is seen, not guessed."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        """Charge the time since the previous lap (or step) to ``name``."""
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._last
        self._last = now

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self._last = time.perf_counter()
            self.seconds[name] = self.seconds.get(name, 0.0) + self._last - start

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.seconds.items()}


def parse_run_date(text: str | None) -> date | None:
    """``--run-date``: YYYY-MM-DD (a longer ISO timestamp is cut to its date); None when not given."""
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError as exc:
        raise SourceError(f"--run-date must be YYYY-MM-DD, got {text!r}") from exc


def hours(text: str) -> int:
    """An argparse type: a whole number of hours, 0 or more (``--retention-hours``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of hours, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 hours or more, got {value}")
    return value


def _number(text: str, expected: str, ok: Callable[[float], bool]) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive(text: str) -> float:
    """An argparse type: a number above 0 (``apparel simulate --rate``, ``--duration``)."""
    return _number(text, "a number above 0", lambda v: 0 < v < float("inf"))


def fraction(text: str) -> float:
    """An argparse type: a share from 0 to 1 (``apparel simulate --updates``, ``--deletes``)."""
    return _number(text, "a share from 0 to 1", lambda v: 0 <= v <= 1)


def one_line_error(exc: BaseException) -> str:
    """The first meaningful line of an error, including Spark/Java errors raised through py4j."""
    if isinstance(exc, ApparelError):
        return str(exc)
    text = str(exc).strip()
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            text = str(java.toString())
        except Exception:  # noqa: BLE001 - the JVM may be gone already
            pass
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return f"{type(exc).__name__}: {first}" if type(exc).__name__ not in first else first


def run_job(body: Callable, env: str | None = None, app_name: str | None = None,
            before_spark: Callable | None = None) -> int:
    """Shared wrapper of the spark-submit entry points: settings, the run lock and ``ops.run_log``
    (:func:`apparel.runlog.batch_run`: one run at a time on the lakehouse, trigger ``spark-submit``, or
    ``airflow:<dag>/<task>`` from Airflow's operator), ``before_spark(settings)`` (checks that need no session),
    the session, ``body(spark, settings)``, one-line errors."""
    from apparel.runlog import batch_run
    from apparel.spark import get_spark

    command = (app_name or "job").removeprefix("apparel-")
    layers = [command] if command in ("bronze", "silver", "gold") else []
    try:
        settings = load_settings(env=env)
        with batch_run(settings, command, layers, trigger="spark-submit",
                       log=lambda m: print(m, file=sys.stderr, flush=True)) as run:
            if before_spark is not None:
                before_spark(settings)
            spark = get_spark(settings, app_name=app_name)
            run.begin(spark)
            body(spark, settings)
        return 0
    except Exception as exc:  # noqa: BLE001 - reported as one line, the log keeps the traceback
        traceback.print_exc(file=sys.stderr)
        print(f"error: {one_line_error(exc)}", file=sys.stderr)
        return 1
