"""Wall time and CPU time of one whole ``apparel run`` (seed + bronze + silver + gold, in a new process on fresh
temporary folders) per set of JVM flags for the Spark driver (``APPAREL_SPARK_JAVA_OPTIONS``) or Spark settings,
against the run with no flag measured in the same rounds.

On 2 cores a suite of tests is CPU-bound: what a flag saves in CPU seconds (the JIT compiler's threads, the
garbage collector's) is what the other processes get. CPU time is the machine's busy time while the run lasts
(``/proc/stat``, every process: measure on a quiet machine; the load average at the start is printed), wall
time the run's. Each round runs every variant once, in turn; the figures are medians over the rounds, and each
is printed as a ratio to the no-flag run's. Printed, never asserted. Run from the repo root (about 2 minutes per
run on 2 cores)::

    .venv/bin/python bench/jvm_bench.py [--repeat 2] [--variant NAME=FLAGS ...] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine_context, median, print_table, run_child  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "no flag": "",
    "C1 only": "-XX:TieredStopAtLevel=1",
    "serial GC": "-XX:+UseSerialGC",
    "C1 + serial GC": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    "no whole-stage codegen": "spark.sql.codegen.wholeStage=false",
}


def busy_jiffies() -> int:
    """Busy time of all CPUs since boot (user, nice, system, irq, softirq, steal), in clock ticks."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def one_run(flags: str, folder: Path) -> tuple[float, float]:
    """One ``apparel run`` in ``folder``; ``flags``: JVM flags, and ``spark.<key>=<value>`` tokens, which go to
    a ``spark-defaults.conf`` of the run's own (``SPARK_CONF_DIR``; the project's settings still win)."""
    tokens = flags.split()
    spark_conf = [t for t in tokens if t.startswith("spark.")]
    jvm = " ".join(t for t in tokens if not t.startswith("spark."))
    env = {**os.environ, "APPAREL_ENV": "local", "APPAREL_LAKEHOUSE": str(folder / "lakehouse"),
           "APPAREL_LANDING": str(folder / "landing"), "APPAREL_STORE_DB": f"sqlite:///{folder / 'store.db'}",
           "APPAREL_STORE_READ_DB": "", "APPAREL_REPORTS": str(folder / "reports"),
           "APPAREL_SPARK_JAVA_OPTIONS": jvm, "TZ": "UTC"}
    if spark_conf:
        (folder / "spark-conf").mkdir()
        (folder / "spark-conf" / "spark-defaults.conf").write_text(
            "".join(f"{k} {v}\n" for k, v in (t.split("=", 1) for t in spark_conf)))
        env["SPARK_CONF_DIR"] = str(folder / "spark-conf")
    before = busy_jiffies()
    child = run_child([sys.executable, "-m", "apparel.cli", "run"], env=env, cwd=ROOT)
    cpu = (busy_jiffies() - before) / os.sysconf("SC_CLK_TCK")
    if child.returncode != 0:
        raise SystemExit(f"apparel run with {flags or 'no flag'} exited {child.returncode}:\n{child.tail()}")
    return child.wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                    help="a set of flags to measure instead of the built-in ones (repeatable): JVM flags and "
                         "spark.<key>=<value> settings, space-separated")
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) if args.variant else dict(VARIANTS)
    variants = {"no flag": "", **variants}
    for key, value in machine_context():
        print(f"{key:<10} {value}")
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for r in range(args.repeat):
        for name, flags in variants.items():
            with tempfile.TemporaryDirectory(prefix="apparel-jvm-bench-") as tmp:
                wall, cpu = one_run(flags, Path(tmp))
            figures[name].append((wall, cpu))
            print(f"[round {r + 1}/{args.repeat}] {name:<15} wall {wall:6.1f} s, CPU {cpu:6.1f} s", flush=True)
    ref_wall = median([w for w, _ in figures["no flag"]])
    ref_cpu = median([c for _, c in figures["no flag"]])
    rows = []
    for name, flags in variants.items():
        wall, cpu = median([w for w, _ in figures[name]]), median([c for _, c in figures[name]])
        rows.append([name, flags or "-", f"{wall:.1f}", f"{wall / ref_wall:.2f}", f"{cpu:.1f}", f"{cpu / ref_cpu:.2f}"])
    print()
    print_table(["variant", "flags", "wall s", "x no flag", "CPU s", "x no flag"], rows)
    if args.csv:
        with args.csv.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["variant", "flags", "wall_s", "wall_ratio", "cpu_s", "cpu_ratio"])
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
