"""Wall time, Spark jobs, Delta commits and peak memory of the pipeline (seed + layers), against Spark's own
floor: cold, warm, nothing new, and one incremental day.

Each round (``--repeat N`` rounds; the figures printed are medians over the rounds) runs two new Python
processes (this script re-run with a hidden flag), in fresh temporary directories (lakehouse, landing area,
SQLite store), so nothing in the checkout is touched:

- **floor**: Spark's own floor, measured in one new process with the same settings: the session start
  (JVM launch, jars, Delta), then one tiny Delta write (a one-row table) and one read of it back. Every
  timing below is also printed as a multiple of it (``x floor``). It has its own process so that the cold
  run after it pays its own JVM and Delta warm-up, as a real ``apparel run`` does;
- **cold**: a new process loads the settings, seeds the dataset, starts Spark and runs the layers: a full
  run from seed to gold in a fresh process (``startup`` is the interpreter and imports, read from
  ``/proc/self/stat``);
- **warm**: in that same process, a second full run: a second fresh lakehouse and store, seed, layers;
- **nothing new**: the layers again on warm's lakehouse with nothing changed; which tables got a new Delta
  version (versions before and after) is printed;
- **incremental day**: one more day of orders appended to warm's store (``bench/incremental_day.py``), then
  the layers again;
- **tiny commit (warm)**: the floor's tiny Delta write and read again, on the live session.

Per layer phase it counts the Spark jobs (each phase runs in its own job group; the count is the advance of
the newest job id the status tracker knows, so jobs from the pipeline's writer threads count too) and the
Delta commits per table layer (the versions each ``_delta_log`` gained). Each commit is timed by wrapping the
calls that commit (``DataFrameWriter.save``, ``DeltaMergeBuilder.execute``, ``DeltaTable.delete/update``,
OPTIMIZE/VACUUM, DML through ``spark.sql``): its time is the call's wall time, which includes computing the
rows it writes. The slowest ten are printed. Peak memory is the ``VmHWM`` of the Python process and of the
Spark JVM (its child), a lifetime high-water mark: the figure after the cold run and at the end.

Figures are printed (and optionally written as CSV), never asserted. Run from the repo root (about 3-5
minutes per round on 2 cores)::

    .venv/bin/python bench/pipeline_bench.py [--dataset DIR] [--layers bronze[,silver,gold]] [--repeat 3]
                                             [--store sqlite|URL] [--csv OUT.csv]

Without ``--dataset`` it uses ``../shared/datasets/django_apparel``, or the generated sample (scale 1) when
that folder does not exist. ``--layers`` defaults to every layer of ``apparel.pipeline.LAYER_ORDER``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import (
    emit,
    jvm_peak_kib,
    machine_context,
    median,
    mib,
    print_table,
    run_child,
    vm_hwm_kib,
)

from apparel import pipeline
from apparel.config import PROJECT_ROOT, Settings, load_settings
from apparel.errors import ConfigError

DEFAULT_DATASET = PROJECT_ROOT.parent / "shared/datasets/django_apparel"
SCENARIOS = ["cold", "warm", "nothing new", "incremental day"]
TABLE_LAYERS = ["bronze", "silver", "quarantine", "gold", "ops"]


# --- measuring in the child -------------------------------------------------------------------------------

def since_process_start() -> float:
    """Seconds since this process started (interpreter start-up and imports, up to the call)."""
    ticks = os.sysconf("SC_CLK_TCK")
    start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
    return float(Path("/proc/uptime").read_text().split()[0]) - start


def delta_versions(root: Path) -> dict[str, int]:
    """``{"<layer>.<table>": newest version}`` of every Delta table under a local lakehouse root."""
    out: dict[str, int] = {}
    if not root.is_dir():
        return out
    for log in root.glob("*/*/_delta_log"):
        versions = [int(p.name[:20]) for p in log.glob("*.json") if p.name[:20].isdigit()]
        if versions:
            out[f"{log.parent.parent.name}.{log.parent.name}"] = max(versions)
    return out


def commit_info(root: Path, name: str, version: int) -> dict[str, Any]:
    layer, table = name.split(".")
    path = root / layer / table / "_delta_log" / f"{version:020d}.json"
    for line in path.read_text().splitlines():
        action = json.loads(line)
        if "commitInfo" in action:
            info = action["commitInfo"]
            metrics = info.get("operationMetrics") or {}
            rows = metrics.get("numOutputRows") or metrics.get("numTargetRowsInserted")
            return {"timestamp": info.get("timestamp"), "operation": info.get("operation"),
                    "rows": int(rows) if rows is not None else None}
    return {"timestamp": None, "operation": None, "rows": None}


class CommitCalls:
    """Wraps the calls that can commit to a Delta table and records each one's path (when known), thread,
    start and end. ``match`` then gives each new Delta commit the call that made it: the call on the same
    path (or of unknown path) whose interval holds the commit's timestamp, ending nearest to it."""

    DML = ("MERGE", "INSERT", "DELETE", "UPDATE", "OPTIMIZE", "VACUUM", "CREATE", "REPLACE", "ALTER", "RESTORE")

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def install(self) -> None:
        from delta.tables import DeltaMergeBuilder, DeltaOptimizeBuilder, DeltaTable
        from pyspark.sql import SparkSession
        from pyspark.sql.readwriter import DataFrameWriter

        self._wrap(DataFrameWriter, "save", lambda a, kw: kw.get("path", a[1] if len(a) > 1 else None))
        self._wrap(DeltaMergeBuilder, "execute")
        for method in ("delete", "update", "vacuum", "restoreToVersion", "restoreToTimestamp"):
            self._wrap(DeltaTable, method)
        for method in ("executeCompaction", "executeZOrderBy"):
            self._wrap(DeltaOptimizeBuilder, method)
        self._wrap(SparkSession, "sql", skip=lambda a, kw: not str(kw.get("sqlQuery", a[1] if len(a) > 1 else ""))
                   .lstrip().upper().startswith(self.DML))

    def _wrap(self, cls, method: str, path_of=None, skip=None) -> None:
        original = getattr(cls, method)
        if getattr(original, "_bench_wrapped", False):
            return
        calls, lock = self.calls, self.lock

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            if skip is not None and skip(args, kwargs):
                return original(*args, **kwargs)
            start = time.time()
            try:
                return original(*args, **kwargs)
            finally:
                path = path_of(args, kwargs) if path_of else None
                with lock:
                    calls.append({"what": f"{cls.__name__}.{method}", "path": str(path) if path else None,
                                  "start": start, "end": time.time(), "used": False})

        wrapper._bench_wrapped = True
        setattr(cls, method, wrapper)

    def match(self, root: Path, name: str, timestamp_ms: int | None) -> float | None:
        if timestamp_ms is None:
            return None
        layer, table = name.split(".")
        path = str(root / layer / table).rstrip("/")
        ts = timestamp_ms / 1000
        with self.lock:
            fits = [c for c in self.calls if not c["used"] and (c["path"] is None or c["path"].rstrip("/") == path)
                    and c["start"] - 0.05 <= ts <= c["end"] + 0.5]
            if not fits:
                return None
            best = min(fits, key=lambda c: (c["path"] is None, abs(c["end"] - ts)))
            best["used"] = True
            return best["end"] - best["start"]


class Probe:
    """Spark jobs and Delta commits of each phase of a run."""

    def __init__(self, spark, calls: CommitCalls):
        self.sc = spark.sparkContext
        self.calls = calls
        self.commits: list[dict[str, Any]] = []

    def newest_job(self, group: str | None = None) -> int:
        tracker = self.sc.statusTracker()
        ids = list(tracker.getJobIdsForGroup(None)) + (list(tracker.getJobIdsForGroup(group)) if group else [])
        return max(ids, default=-1)

    def phase(self, scenario: str, layer: str, root: Path, body) -> tuple[float, int, dict[str, int]]:
        """Run ``body()`` as one phase; return (seconds, Spark jobs, Delta commits per table layer)."""
        group = f"bench {scenario} {layer}"
        before_job = self.newest_job(group)
        before = delta_versions(root)
        self.sc.setJobGroup(group, group)
        t = time.perf_counter()
        try:
            body()
        finally:
            seconds = time.perf_counter() - t
            self.sc.setLocalProperty("spark.jobGroup.id", None)
            self.sc.setLocalProperty("spark.job.description", None)
        jobs = self.newest_job(group) - before_job
        after = delta_versions(root)
        per_layer = dict.fromkeys(TABLE_LAYERS, 0)
        for name, version in sorted(after.items()):
            for v in range(before.get(name, -1) + 1, version + 1):
                info = commit_info(root, name, v)
                per_layer[name.split(".")[0]] = per_layer.get(name.split(".")[0], 0) + 1
                self.commits.append({"scenario": scenario, "phase": layer, "table": name, "version": v,
                                     "operation": info["operation"], "rows": info["rows"],
                                     "seconds": self.calls.match(root, name, info["timestamp"])})
        return seconds, jobs, per_layer


def bench_settings(workdir: Path, store: str) -> Settings:
    environ = {**os.environ, "APPAREL_LAKEHOUSE": str(workdir / "lakehouse"),
               "APPAREL_LANDING": str(workdir / "landing"), "APPAREL_REPORTS": str(workdir / "reports"),
               "APPAREL_STORE_DB": f"sqlite:///{workdir / 'store.db'}" if store == "sqlite" else store}
    settings: Settings = load_settings(environ=environ)
    raw = json.loads(json.dumps(settings.raw))  # keep Spark's warehouse dir out of the checkout too
    raw["spark"].setdefault("conf", {})["spark.sql.warehouse.dir"] = str(workdir / "spark-warehouse")
    return dataclasses.replace(settings, raw=raw)


def tiny_delta(spark, path: Path) -> tuple[float, float]:
    """Seconds of one tiny Delta write (a one-row table) and of reading it back."""
    t = time.perf_counter()
    spark.createDataFrame([(1, "x")], "id BIGINT, name STRING").write.format("delta").mode("overwrite").save(
        str(path))
    write = time.perf_counter() - t
    t = time.perf_counter()
    rows = spark.read.format("delta").load(str(path)).count()
    read = time.perf_counter() - t
    if rows != 1:
        raise RuntimeError(f"the tiny Delta table read back {rows} rows")
    return write, read


# --- the children -----------------------------------------------------------------------------------------

def child_floor(args: argparse.Namespace) -> int:
    from apparel.spark import get_spark

    startup = since_process_start()
    workdir = Path(args.workdir)
    settings = bench_settings(workdir, "sqlite")
    t = time.perf_counter()
    spark = get_spark(settings, app_name="apparel-bench-floor")
    start = time.perf_counter() - t
    write, read = tiny_delta(spark, workdir / "tiny")
    emit({"startup": startup, "spark start": start, "tiny write": write, "tiny read": read,
          "floor": start + write + read, "python_kib": vm_hwm_kib(), "jvm_kib": jvm_peak_kib()})
    spark.stop()  # so the JVM removes its temporary folders as it exits
    return 0


def child_pipeline(args: argparse.Namespace) -> int:
    from incremental_day import append_day

    from apparel.seed import seed_dataset, seed_generated
    from apparel.spark import get_spark

    startup = since_process_start()
    layers = pipeline.parse_layers(args.layers)
    dataset = Path(args.dataset) if args.dataset else None
    workdir = Path(args.workdir)
    def quiet(msg):
        return print(msg, file=sys.stderr)  # stdout carries only the result line
    calls = CommitCalls()
    calls.install()
    out: dict[str, Any] = {"layers": layers}
    spark = probe = None

    def run(scenario: str, settings: Settings, seed: bool, extra: dict[str, float]) -> dict[str, Any]:
        nonlocal spark, probe
        phases = dict(extra)
        if seed:
            t = time.perf_counter()
            if dataset is None:
                seed_generated(settings, scale=1, log=quiet)
            else:
                seed_dataset(settings, dataset, log=quiet)
            phases["seed"] = time.perf_counter() - t
        if spark is None:
            t = time.perf_counter()
            spark = get_spark(settings, app_name="apparel-bench")
            phases["spark start"] = time.perf_counter() - t
            probe = Probe(spark, calls)
        root = Path(settings.lakehouse)
        jobs, commits = {}, {}
        before = delta_versions(root)
        for layer in layers:
            phases[layer], jobs[layer], commits[layer] = probe.phase(
                scenario, layer, root, lambda layer=layer: pipeline.run_layers(spark, settings, [layer], log=quiet))
        after = delta_versions(root)
        phases["total"] = sum(phases.values())
        return {"phases": phases, "jobs": jobs, "commits": commits,
                "new_versions": sorted(n for n, v in after.items() if v != before.get(n, -1))}

    for name in ("cold", "warm"):
        (workdir / name).mkdir()
        t = time.perf_counter()
        settings = bench_settings(workdir / name, args.store)
        extra = {"startup": startup} if name == "cold" else {}
        extra["settings"] = time.perf_counter() - t
        out[name] = run(name, settings, seed=True, extra=extra)
        if name == "cold":
            out["cold"]["python_kib"], out["cold"]["jvm_kib"] = vm_hwm_kib(), jvm_peak_kib()
    out["nothing new"] = run("nothing new", settings, seed=False, extra={})
    t = time.perf_counter()
    added = append_day(settings.store_db, seed=1)
    out["incremental day"] = run("incremental day", settings, seed=False,
                                 extra={"append day": time.perf_counter() - t})
    out["incremental day"]["added"] = dataclasses.asdict(added)
    write, read = tiny_delta(spark, workdir / "tiny")
    out["tiny commit (warm)"] = {"tiny write": write, "tiny read": read}
    out["commits"] = probe.commits
    out["python_kib"], out["jvm_kib"] = vm_hwm_kib(), jvm_peak_kib()
    emit(out)
    spark.stop()
    return 0


# --- the parent: rounds, medians, the report --------------------------------------------------------------

def one_round(args, dataset: Path | None, layers: list[str], logs: Path | None, i: int) -> tuple[dict, dict]:
    results = []
    for kind in ("floor", "pipeline"):
        with tempfile.TemporaryDirectory(prefix=f"apparel-bench-{kind}-") as tmp:
            cmd = [sys.executable, str(Path(__file__).resolve()), f"--child-{kind}", "--workdir", tmp,
                   "--layers", ",".join(layers), "--store", args.store]
            cmd += ["--dataset", str(dataset)] if dataset else []
            res = run_child(cmd, cwd=tmp, log=(logs / f"round{i}-{kind}.log") if logs else None)
        if res.returncode != 0 or res.result is None:
            raise RuntimeError(f"the {kind} child failed (exit {res.returncode}); its last output:\n{res.tail()}")
        res.result["process wall"] = res.wall
        results.append(res.result)
        print(f"  round {i}: {kind} child done in {res.wall:.1f}s", flush=True)
    return results[0], results[1]


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def ratio(value: float | None, floor: float) -> str:
    return "-" if value is None or not floor else f"{value / floor:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help=f"dataset folder (default: {DEFAULT_DATASET})")
    parser.add_argument("--layers", help=f"comma-separated layers (default: {','.join(pipeline.LAYER_ORDER)})")
    parser.add_argument("--store", default="sqlite", help="'sqlite' (a temporary file) or a store URL")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the figures are their medians (default 1)")
    parser.add_argument("--csv", type=Path, help="also write the figures to this CSV file")
    parser.add_argument("--keep-logs", type=Path, help="keep each child's output in this folder")
    parser.add_argument("--child-floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-pipeline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_floor:
        return child_floor(args)
    if args.child_pipeline:
        return child_pipeline(args)

    try:
        layers = pipeline.parse_layers(args.layers)
    except (ValueError, ConfigError) as exc:
        parser.error(str(exc))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
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
             else args.store + " (shared by both runs; seeding replaces its rows)")
    print(f"{'store':<10} {store}")
    print(f"{'rounds':<10} {args.repeat} (figures are medians)" if args.repeat > 1 else f"{'rounds':<10} 1")
    sys.stdout.flush()
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)

    rounds = []
    for i in range(1, args.repeat + 1):
        try:
            rounds.append(one_round(args, dataset, layers, args.keep_logs, i))
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    report(rounds, layers, args.csv)
    return 0


def report(rounds: list[tuple[dict, dict]], layers: list[str], csv_path: Path | None) -> None:
    floors = [f for f, _ in rounds]
    runs = [p for _, p in rounds]
    csv_rows: list[list[Any]] = []

    def med(get) -> float | None:
        values = []
        for item in runs:
            try:
                values.append(get(item))
            except (KeyError, TypeError):
                values.append(None)
        return median(values)

    floor = median([f["floor"] for f in floors])
    print()
    print(f"Spark's floor (a new process: session start + one tiny Delta write + read): {floor:.2f}s")
    rows = []
    labels = {"floor": "floor (spark start + write + read)", "process wall": "process wall (start to exit)"}
    for key in ("startup", "spark start", "tiny write", "tiny read", "floor", "process wall"):
        value = median([f.get(key) for f in floors])
        rows.append([f"floor process: {labels.get(key, key)}", fmt(value), ratio(value, floor)])
        csv_rows.append(["floor", key, value, "s"])
    for key in ("tiny write", "tiny read"):
        value = med(lambda r, k=key: r["tiny commit (warm)"][k])
        rows.append([f"pipeline process, warm: {key}", fmt(value), ratio(value, floor)])
        csv_rows.append(["tiny commit (warm)", key, value, "s"])
    print_table(["", "s", "x floor"], rows)

    print()
    phase_names: list[str] = []
    for r in runs:
        for scenario in SCENARIOS:
            for name in r[scenario]["phases"]:
                if name not in phase_names:
                    phase_names.append(name)
    order = ["startup", "settings", "seed", "append day", "spark start", *layers, "total"]
    phase_names = [p for p in order if p in phase_names] + [p for p in phase_names if p not in order]
    header = ["phase (seconds, x floor)"]
    for scenario in SCENARIOS:
        header += [scenario, "x"]
    rows = []
    for name in phase_names:
        row = [name]
        for scenario in SCENARIOS:
            value = med(lambda r, s=scenario, n=name: r[s]["phases"][n])
            row += [fmt(value), ratio(value, floor)]
            if value is not None:
                csv_rows.append([scenario, name, value, "s"])
        rows.append(row)
    print_table(header, rows)
    print("cold total = a full run in a fresh process, from interpreter start to gold; warm = a second full run in")
    print("the same process (fresh lakehouse and store); nothing new and incremental day run on warm's lakehouse.")

    print()
    header = ["Spark jobs / Delta commits"] + SCENARIOS
    rows = []
    for layer in layers:
        rows.append([f"jobs: {layer} phase"] + [fmt(med(lambda r, s=s, ly=layer: r[s]["jobs"][ly]), ".0f")
                                                for s in SCENARIOS])
        for s in SCENARIOS:
            csv_rows.append([s, f"jobs {layer}", med(lambda r, s=s, ly=layer: r[s]["jobs"][ly]), "jobs"])
    for table_layer in TABLE_LAYERS:
        cells = []
        for s in SCENARIOS:
            value = med(lambda r, s=s, tl=table_layer: sum(c.get(tl, 0) for c in r[s]["commits"].values()))
            cells.append(fmt(value, ".0f"))
            csv_rows.append([s, f"commits {table_layer}", value, "commits"])
        rows.append([f"commits: {table_layer} tables"] + cells)
    print_table(header, rows)
    last = runs[-1]
    for scenario in ("nothing new", "incremental day"):
        changed = last[scenario]["new_versions"]
        kept = [n for n in changed if n.split(".")[0] in ("silver", "gold", "quarantine")]
        print(f"{scenario}: {len(changed)} table(s) got a new Delta version"
              + (f", {len(kept)} of them in silver, quarantine or gold: {', '.join(kept)}" if kept
                 else "; none in silver, quarantine or gold")
              + (f"; elsewhere: {', '.join(n for n in changed if n not in kept)}" if len(changed) > len(kept) else ""))
    added = last["incremental day"].get("added") or {}
    if added:
        print(f"incremental day: {added['orders']} orders, {added['lines']} lines on {added['day']}")

    print()
    print("slowest ten commits (the committing call's wall time, rows computed and written; median over rounds)")
    keyed: dict[tuple, list[dict]] = {}
    for r in runs:
        nth: dict[tuple, int] = {}
        for c in r["commits"]:
            base = (c["scenario"], c["table"])
            nth[base] = nth.get(base, 0) + 1
            keyed.setdefault((*base, nth[base]), []).append(c)
    merged = []
    for (scenario, table, n), cs in keyed.items():
        merged.append({"scenario": scenario, "table": table, "n": n, "phase": cs[0]["phase"],
                       "operation": cs[0]["operation"], "rows": cs[0]["rows"],
                       "seconds": median([c["seconds"] for c in cs])})
    timed = sorted((c for c in merged if c["seconds"] is not None), key=lambda c: -c["seconds"])
    rows = [[c["scenario"], c["table"], c["operation"] or "-", fmt(c["rows"], ",.0f"), fmt(c["seconds"]),
             ratio(c["seconds"], floor)] for c in timed[:10]]
    print_table(["scenario", "table", "operation", "rows", "s", "x floor"], rows)
    untimed = [c for c in merged if c["seconds"] is None]
    total = sum(c["seconds"] for c in timed)
    print(f"{len(merged)} commits in all, {len(timed)} timed ({total:.1f}s summed; concurrent commits overlap)"
          + (f"; {len(untimed)} not matched to a call" if untimed else ""))
    for c in timed:
        csv_rows.append([c["scenario"], f"commit {c['table']} #{c['n']} {c['operation']}", c["seconds"], "s"])

    print()
    rows = [["peak RSS python (VmHWM)", mib(median([r["cold"]["python_kib"] for r in runs])),
             mib(median([r["python_kib"] for r in runs]))],
            ["peak RSS JVM (VmHWM)", mib(median([r["cold"]["jvm_kib"] for r in runs])),
             mib(median([r["jvm_kib"] for r in runs]))],
            ["floor process: python / JVM", mib(median([f["python_kib"] for f in floors])),
             mib(median([f["jvm_kib"] for f in floors]))]]
    print_table(["memory (MiB)", "after cold", "at the end"], rows, first_width=36)
    print("VmHWM is a lifetime high-water mark: 'at the end' is the peak over all four runs of the process.")
    wall = statistics.median([r["process wall"] for r in runs])
    print(f"pipeline child process wall (start to exit, all four runs): {wall:.1f}s")
    csv_rows += [["memory", "python peak after cold", median([r["cold"]["python_kib"] for r in runs]), "KiB"],
                 ["memory", "JVM peak after cold", median([r["cold"]["jvm_kib"] for r in runs]), "KiB"],
                 ["memory", "python peak at the end", median([r["python_kib"] for r in runs]), "KiB"],
                 ["memory", "JVM peak at the end", median([r["jvm_kib"] for r in runs]), "KiB"]]
    if csv_path:
        with csv_path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["scenario", "metric", "value", "unit"])
            writer.writerows(csv_rows)
        print(f"wrote {csv_path}")


if __name__ == "__main__":
    sys.exit(main())
