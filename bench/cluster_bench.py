"""The pipeline on the Spark standalone cluster versus local mode (docs/topology.md), on the generated sample.

It starts its own cluster (scripts/spark-cluster.sh: a master and 2 workers of 1 core each, on free ports, its
folders in a temporary directory), seeds the sample (`apparel seed --scale N`, SQLite), then runs the same
`apparel run` twice on fresh lakehouses: in local mode (`local[2]`, the reference, measured in the same run) and on
the cluster, and prints both wall times, each layer's time from the run's own lines, and the ratio. The local
environment is used for both (no object store jars: a local lakehouse). It prints figures and never asserts them.
Usage:

    .venv/bin/python bench/cluster_bench.py [--scale 1] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import free_ports, machine_context, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
LAYER = re.compile(r"^\s*([\d.]+)s \[(bronze|silver|gold)\]")
DONE = re.compile(r"done in ([\d.]+)s")


def run(cmd: list[str], env: dict, timeout: float = 3600) -> str:
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def timed_run(env: dict) -> tuple[float, dict[str, float]]:
    """Wall seconds of `apparel run`, and when each layer started (seconds into the run, from its log)."""
    started = time.perf_counter()
    out = run([PY, "-m", "apparel.cli", "run", "--run-date", "2026-03-02"], env)
    wall = time.perf_counter() - started
    marks = {m.group(2): float(m.group(1)) for m in map(LAYER.match, out.splitlines()) if m}
    done = next((float(m.group(1)) for m in map(DONE.search, out.splitlines()) if m), wall)
    order = [k for k in ("bronze", "silver", "gold") if k in marks]
    spans = {k: (marks[order[i + 1]] if i + 1 < len(order) else done) - marks[k] for i, k in enumerate(order)}
    spans["session start"] = marks.get("bronze", 0.0)
    return wall, spans


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="apparel-bench-cluster-"))
    port, ui = free_ports(1), free_ports(3)
    cluster_env = {k: v for k, v in os.environ.items() if not k.startswith("APPAREL_")} | {
        "APPAREL_SPARK_CLUSTER_URL": f"spark://127.0.0.1:{port}", "APPAREL_SPARK_CLUSTER_UI_PORT": str(ui),
        "APPAREL_SERVICES_DIR": str(work / "services")}
    base = cluster_env | {"APPAREL_ENV": "local", "TZ": "UTC", "APPAREL_STORE_DB": f"sqlite:///{work / 'store.db'}",
                          "APPAREL_LANDING": str(work / "landing"), "APPAREL_REPORTS": str(work / "reports")}
    try:
        started = time.perf_counter()
        run(["bash", "scripts/spark-cluster.sh", "start"], cluster_env)
        cluster_start = time.perf_counter() - started
        run([PY, "-m", "apparel.cli", "seed", "--scale", f"{args.scale:g}"], base)
        results = {}
        for name, master in (("local[2]", "local[2]"), ("cluster (2 workers x 1 core)", f"spark://127.0.0.1:{port}")):
            print(f"[bench] apparel run on {name}", file=sys.stderr)
            env = base | {"APPAREL_SPARK_MASTER": master,
                          "APPAREL_LAKEHOUSE": str(work / re.sub(r"\W+", "_", name) / "lakehouse")}
            results[name] = timed_run(env)
        for key, value in machine_context():
            print(f"{key}: {value}")
        print(f"scale {args.scale:g}; cluster start (master + 2 workers): {cluster_start:.1f} s")
        local_wall, local_spans = results["local[2]"]
        rows = []
        for name, (wall, spans) in results.items():
            rows.append([name, f"{wall:.1f}", *(f"{spans.get(k, float('nan')):.1f}" for k in
                                                ("session start", "bronze", "silver", "gold")),
                         f"{wall / local_wall:.2f}x"])
        print_table(["master", "wall s", "session start s", "bronze s", "silver s", "gold s", "vs local"], rows)
    finally:
        if not args.keep:
            subprocess.run(["bash", "scripts/spark-cluster.sh", "stop"], env=cluster_env, cwd=ROOT,
                           capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
