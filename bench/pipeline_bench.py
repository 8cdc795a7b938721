"""Wall time and peak memory of the pipeline (seed + layers), cold and warm.

What it measures, each run in a fresh temporary directory (lakehouse, landing area, SQLite store), so nothing
in the checkout is touched:

- **cold**: a new Python process (this script re-run with the hidden ``--child`` flag) loads the settings,
  seeds the dataset, starts Spark (JVM launch, jars, Delta) and runs the layers;
- **warm**: in that same process, a second fresh lakehouse + store: seed and run again on the already-started
  JVM.

Each phase (settings, seed, spark start, each layer) is timed with ``time.perf_counter``. Peak memory is the
``VmHWM`` of the Python process and of the Spark JVM (its child process), read from ``/proc`` after each run.
``VmHWM`` is a high-water mark over a process's whole life, so the warm figure is the peak of cold + warm.
The parent also reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once the child has exited. Figures are
printed (and optionally written as CSV), never asserted.

Run from the repo root (about 1-2 minutes on 2 cores)::

    .venv/bin/python bench/pipeline_bench.py [--dataset DIR] [--layers bronze[,silver,gold]]
                                             [--store sqlite|URL] [--csv OUT.csv]

Without ``--dataset`` it uses ``../shared/datasets/django_apparel``, or the generated sample (scale 1) when
that folder does not exist. ``--layers`` defaults to every layer of ``apparel.pipeline.LAYER_ORDER``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from apparel import pipeline
from apparel.config import PROJECT_ROOT, Settings, load_settings

DEFAULT_DATASET = PROJECT_ROOT.parent / "shared/datasets/django_apparel"
MARKER = "BENCH_RESULT "


# --- /proc helpers ------------------------------------------------------------------------------------

def vm_hwm_kib(pid: int | str = "self") -> int | None:
    """Peak resident set size (``VmHWM``) of a live process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def java_descendants(root: int) -> list[int]:
    """Pids under ``root`` (children, grandchildren...) whose command line mentions java."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # the comm field may hold spaces: the ppid is the 2nd field after the closing paren
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: list[int] = []
    frontier = [root]
    while frontier:
        kids = [pid for pid, ppid in parents.items() if ppid in frontier]
        for pid in kids:
            try:
                if b"java" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        frontier = kids
    return found


# --- the child: one cold and one warm run in a single Python process -------------------------------------

def run_once(workdir: Path, dataset: Path | None, store: str, layers: list[str]) -> dict[str, Any]:
    from apparel.seed import seed_dataset, seed_generated
    from apparel.spark import get_spark

    quiet = lambda msg: print(msg, file=sys.stderr)  # noqa: E731 - stdout carries only the result line
    phases: dict[str, float] = {}
    t = time.perf_counter()
    environ = {**os.environ, "APPAREL_LAKEHOUSE": str(workdir / "lakehouse"),
               "APPAREL_LANDING": str(workdir / "landing"),
               "APPAREL_STORE_DB": f"sqlite:///{workdir / 'store.db'}" if store == "sqlite" else store}
    settings: Settings = load_settings(environ=environ)
    raw = json.loads(json.dumps(settings.raw))  # keep Spark's warehouse dir out of the checkout too
    raw["spark"].setdefault("conf", {})["spark.sql.warehouse.dir"] = str(workdir / "spark-warehouse")
    settings = dataclasses.replace(settings, raw=raw)
    phases["settings"] = time.perf_counter() - t
    t = time.perf_counter()
    if dataset is None:
        seed_generated(settings, scale=1, log=quiet)
    else:
        seed_dataset(settings, dataset, log=quiet)
    phases["seed"] = time.perf_counter() - t
    t = time.perf_counter()
    spark = get_spark(settings, app_name="apparel-bench")
    phases["spark start"] = time.perf_counter() - t
    for layer in layers:
        t = time.perf_counter()
        pipeline.run_layers(spark, settings, [layer], log=quiet)
        phases[layer] = time.perf_counter() - t
    phases["total"] = sum(phases.values())
    jvms = java_descendants(os.getpid())
    return {"phases": phases, "python_kib": vm_hwm_kib(), "jvm_pids": jvms,
            "jvm_kib": vm_hwm_kib(jvms[0]) if jvms else None}


def child(args: argparse.Namespace) -> int:
    layers = pipeline.parse_layers(args.layers)
    dataset = Path(args.dataset) if args.dataset else None
    workdir = Path(args.workdir)
    result = {"layers": layers}
    for scenario in ("cold", "warm"):
        (workdir / scenario).mkdir()
        result[scenario] = run_once(workdir / scenario, dataset, args.store, layers)
    print(MARKER + json.dumps(result), flush=True)
    return 0


# --- the parent: machine context, the child, the report ---------------------------------------------------

def machine_context() -> list[tuple[str, str]]:
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
        java = (out.stderr or out.stdout).strip().splitlines()[0]
    except (OSError, IndexError):
        java = "(java not found)"
    return [("nproc", str(len(os.sched_getaffinity(0)))), ("total RAM", f"{mem_kib / 1024 ** 2:.1f} GiB"),
            ("java", java), ("pyspark", version("pyspark"))]


def mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help=f"dataset folder (default: {DEFAULT_DATASET})")
    parser.add_argument("--layers", help=f"comma-separated layers (default: {','.join(pipeline.LAYER_ORDER)})")
    parser.add_argument("--store", default="sqlite", help="'sqlite' (a temporary file) or a store URL")
    parser.add_argument("--csv", type=Path, help="also write the figures to this CSV file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    try:
        layers = pipeline.parse_layers(args.layers)
    except ValueError as exc:
        parser.error(str(exc))
    dataset = Path(args.dataset) if args.dataset else DEFAULT_DATASET
    for key, value in machine_context():
        print(f"{key:<10} {value}")
    if dataset.is_dir():
        print(f"{'dataset':<10} {dataset.resolve()}")
    elif args.dataset:
        parser.error(f"dataset folder not found: {dataset}")
    else:
        print(f"{'dataset':<10} {dataset} not found: using the generated sample (scale 1, generated in the seed phase)")
        dataset = None
    print(f"{'layers':<10} {', '.join(layers)}")
    store = ("SQLite, a fresh file per run" if args.store == "sqlite"
             else f"{args.store} (shared by both runs; seeding replaces its rows)")
    print(f"{'store':<10} {store}")

    sys.stdout.flush()  # the context above, before any error from the child
    with tempfile.TemporaryDirectory(prefix="apparel-bench-") as tmp:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--workdir", tmp,
               "--layers", ",".join(layers), "--store", args.store]
        cmd += ["--dataset", str(dataset)] if dataset else []
        started = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        child_wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        print(f"error: the benchmark child failed (exit {proc.returncode}); its last output:", file=sys.stderr)
        print("\n".join((proc.stdout + proc.stderr).splitlines()[-30:]), file=sys.stderr)
        return 1
    res = json.loads(lines[-1][len(MARKER):])
    cold, warm = res["cold"], res["warm"]
    children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    rows: list[tuple[str, str, str, str]] = []  # metric, cold, warm, unit
    for phase in cold["phases"]:
        rows.append((phase, f"{cold['phases'][phase]:.2f}", f"{warm['phases'][phase]:.2f}", "s"))
    rows.append(("child process wall (start to exit)", f"{child_wall:.2f}", "", "s"))
    rows.append(("peak RSS python (VmHWM)", mib(cold["python_kib"]), mib(warm["python_kib"]), "MiB"))
    rows.append(("peak RSS JVM (VmHWM)", mib(cold["jvm_kib"]), mib(warm["jvm_kib"]), "MiB"))
    rows.append(("ru_maxrss RUSAGE_CHILDREN (parent)", mib(children_kib), "", "MiB"))

    print()
    print(f"{'phase':<36} {'cold':>9} {'warm':>9}  unit")
    for metric, c, w, unit in rows:
        print(f"{metric:<36} {c:>9} {w:>9}  {unit}")
    print()
    print(f"JVM pid(s) found under the child: {cold['jvm_pids'] or 'none'}")
    print("VmHWM is a lifetime high-water mark: 'warm' is the same process's peak over the cold AND warm runs.")
    print("ru_maxrss counts only reaped descendants; the Python child does not reap the JVM, so it is the child alone.")
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["metric", "cold", "warm", "unit"])
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
