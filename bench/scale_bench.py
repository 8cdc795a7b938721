"""The pipeline at scale 1, 10 and 100 (7,000 to 700,000 orders): seed, full run, one incremental day, and
the DuckDB reference on the same files.

Per scale, in fresh temporary folders (dataset, lakehouse, landing area, SQLite store, reports), each step
timed from the parent as the wall time of a new process:

1. **generate**: the project's generator (``apparel.generator.generate``, as ``apparel seed --scale`` and
   ``data/generate.py`` use it) writes the 7 files at that scale (in this process);
2. **seed**: ``apparel seed --dataset DIR``;
3. **full run**: ``apparel run`` from an empty lakehouse, in a new process (``apparel.cli.main(["run"])`` in
   a child that then reports its own and its Spark JVM's peak RSS, ``VmHWM`` from ``/proc``);
4. **incremental day**: one more day of orders appended to the store (``bench/incremental_day.py``: new ids,
   the day after the last order), then ``apparel run`` again in a new process;
5. **duckdb**: ``bench/duckdb_reference.py --dataset DIR`` in a new process (the same contract, facts and
   marts in SQL, every layer written as Delta with delta-rs), with its peak RSS (``ru_maxrss``).

It prints one table, metrics by scale, with the ratios Spark ÷ DuckDB (the full run, and seed + full run,
over the reference's process wall time) and incremental day ÷ full run; ``--csv`` writes the same figures
in long form. Timings are printed, never asserted. Everything it creates is removed at the end and every
process it started has exited (a child's process group is ended after it returns). Scale 100 needs about
2 GB of disk for the temporary folders while it runs.

Run from the repo root::

    .venv/bin/python bench/scale_bench.py [--scales 1,10,100] [--seed 7] [--csv OUT.csv] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchlib import (
    emit,
    jvm_peak_kib,
    machine_context,
    print_table,
    run_child,
    vm_hwm_kib,
)

HERE = Path(__file__).resolve().parent
APPAREL = [sys.executable, "-m", "apparel.cli"]


def child_run() -> int:
    """``apparel run`` in this (new) process; then report the peak RSS of this process and of its JVM."""
    from apparel import cli

    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the result line
        rc = cli.main(["run"])
    elapsed = time.perf_counter() - started
    emit({"rc": rc, "seconds": elapsed, "python_kib": vm_hwm_kib(), "jvm_kib": jvm_peak_kib()})
    stop_spark()
    return rc


def stop_spark() -> None:
    """Stop the session `apparel run` left, so its JVM removes its temporary folders as it exits."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


def project_env(work: Path) -> dict[str, str]:
    """The environment of an isolated project state under ``work`` (the services' settings are dropped)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPAREL_")}
    env.update({"APPAREL_LAKEHOUSE": str(work / "lakehouse"), "APPAREL_LANDING": str(work / "landing"),
                "APPAREL_STORE_DB": f"sqlite:///{work / 'store.db'}", "APPAREL_REPORTS": str(work / "reports"),
                "APPAREL_TRINO_URL": "off", "PYTHONUNBUFFERED": "1"})
    return env


class StepFailed(RuntimeError):
    pass


def bench_scale(scale: float, seed: int, logs: Path | None, say) -> dict[str, float | int | None]:
    from incremental_day import append_day

    from apparel.generator import generate

    fig: dict[str, float | int | None] = {}
    with tempfile.TemporaryDirectory(prefix=f"apparel-scale-{scale:g}-") as tmp:
        work = Path(tmp)
        data, state = work / "dataset", work / "state"
        state.mkdir()
        env = project_env(state)

        def step(name: str, cmd: list[str]):
            res = run_child(cmd, env=env, cwd=work, log=(logs / f"scale{scale:g}-{name}.log") if logs else None)
            if res.returncode != 0:
                raise StepFailed(f"{name} at scale {scale:g} failed (exit {res.returncode}):\n{res.tail()}")
            return res

        t = time.perf_counter()
        counts = generate(data, scale=scale, seed=seed)
        fig["generate s"] = time.perf_counter() - t
        fig["orders"], fig["order lines"] = counts["orders"], counts["order_details"]
        fig["dataset MiB"] = sum(f.stat().st_size for f in data.iterdir()) / 2 ** 20
        say(f"scale {scale:g}: generated {counts['orders']:,} orders, {counts['order_details']:,} lines "
            f"in {fig['generate s']:.1f}s")

        res = step("duckdb", [sys.executable, str(HERE / "duckdb_reference.py"), "--dataset", str(data), "--json"])
        fig["duckdb s"] = res.wall
        ref = json.loads(res.stdout.strip().splitlines()[-1])  # --json: one line
        fig["duckdb in-process s"] = ref["timings"]["total"]
        fig["duckdb peak MiB"] = res.maxrss_kib / 1024
        say(f"scale {scale:g}: duckdb reference {res.wall:.1f}s")

        res = step("seed", APPAREL + ["seed", "--dataset", str(data)])
        fig["seed s"] = res.wall
        fig["seed peak MiB"] = res.maxrss_kib / 1024
        say(f"scale {scale:g}: seed {res.wall:.1f}s")

        for name, label in (("full", "full run"), ("incremental", "incremental day")):
            if name == "incremental":
                t = time.perf_counter()
                added = append_day(env["APPAREL_STORE_DB"], seed=seed)
                fig["append day s"] = time.perf_counter() - t
                fig["day orders"], fig["day lines"] = added.orders, added.lines
            res = step(name, [sys.executable, str(Path(__file__).resolve()), "--child-run"])
            fig[f"{label} s"] = res.wall
            for proc in ("python", "jvm"):
                kib = (res.result or {}).get(f"{proc}_kib")
                fig[f"{label} {'JVM' if proc == 'jvm' else proc} peak MiB"] = kib / 1024 if kib else None
            say(f"scale {scale:g}: {label} {res.wall:.1f}s")
        fig["state MiB"] = sum(f.stat().st_size for f in state.rglob("*") if f.is_file()) / 2 ** 20
    fig["full run / duckdb"] = fig["full run s"] / fig["duckdb s"]
    fig["(seed + full run) / duckdb"] = (fig["seed s"] + fig["full run s"]) / fig["duckdb s"]
    fig["incremental day / full run"] = fig["incremental day s"] / fig["full run s"]
    return fig


ROWS = [  # metric, unit, format
    ("orders", "", "{:,.0f}"), ("order lines", "", "{:,.0f}"), ("dataset MiB", "MiB", "{:,.1f}"),
    ("generate s", "s", "{:.1f}"), ("seed s", "s", "{:.1f}"), ("full run s", "s", "{:.1f}"),
    ("day orders", "", "{:,.0f}"), ("day lines", "", "{:,.0f}"), ("append day s", "s", "{:.2f}"),
    ("incremental day s", "s", "{:.1f}"), ("duckdb s", "s", "{:.2f}"), ("duckdb in-process s", "s", "{:.2f}"),
    ("full run / duckdb", "x", "{:.1f}"), ("(seed + full run) / duckdb", "x", "{:.1f}"),
    ("incremental day / full run", "x", "{:.2f}"),
    ("full run python peak MiB", "MiB", "{:,.0f}"), ("full run JVM peak MiB", "MiB", "{:,.0f}"),
    ("incremental day python peak MiB", "MiB", "{:,.0f}"), ("incremental day JVM peak MiB", "MiB", "{:,.0f}"),
    ("seed peak MiB", "MiB", "{:,.0f}"), ("duckdb peak MiB", "MiB", "{:,.0f}"),
    ("state MiB", "MiB", "{:,.0f}"),
]


def parse_scales(text: str) -> list[float]:
    scales = [float(s) for s in text.split(",") if s.strip()]
    if not scales or any(s <= 0 for s in scales):
        raise ValueError(f"--scales takes positive numbers, e.g. 1,10,100; got {text!r}")
    return scales


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10,100", help="comma-separated generator scales (default 1,10,100)")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    parser.add_argument("--csv", type=Path, help="also write the figures to this CSV file (scale, metric, value, unit)")
    parser.add_argument("--keep-logs", type=Path, help="keep each step's output in this folder")
    parser.add_argument("--child-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_run:
        return child_run()
    try:
        scales = parse_scales(args.scales)
    except ValueError as exc:
        parser.error(str(exc))
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)

    for key, value in machine_context():
        print(f"{key:<10} {value}")
    print(f"{'scales':<10} {', '.join(f'{s:g}' for s in scales)} (seed {args.seed}); store SQLite; "
          f"driver memory from conf/ (APPAREL_SPARK_DRIVER_MEMORY)")
    print(f"{'tmp':<10} {tempfile.gettempdir()} (free {shutil.disk_usage(tempfile.gettempdir()).free / 2**30:.0f} GiB)")
    print()

    def say(msg):
        return print(f"  {msg}", flush=True)
    figures: dict[float, dict] = {}
    for scale in scales:
        try:
            figures[scale] = bench_scale(scale, args.seed, args.keep_logs, say)
        except StepFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    print()
    header = ["metric"] + [f"scale {s:g}" for s in scales] + ["unit"]
    rows = []
    for metric, unit, fmt in ROWS:
        cells = [figures[s].get(metric) for s in scales]
        rows.append([metric] + ["-" if v is None else fmt.format(v) for v in cells] + [unit])
    print_table(header, rows)
    print()
    print("Each step's time is the wall time of a new process (interpreter, imports, and for Spark the JVM).")
    print("Spark / DuckDB: the full `apparel run` (and seed + run) over the reference's process, same files.")
    print("JVM peak: VmHWM of the Spark JVM read just before its driver exits; python peak: the driver's VmHWM.")
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["scale", "metric", "value", "unit"])
            for s in scales:
                for metric, unit, _ in ROWS:
                    writer.writerow([f"{s:g}", metric, figures[s].get(metric), unit])
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
