"""The real-time path's speed: how long an order takes from its COMMIT in PostgreSQL to being counted in
``gold.dm_sales_live``, at a given order rate, and what the new JVMs cost in memory.

It starts what is missing (PostgreSQL, Kafka, Kafka Connect with the connector, ``scripts/services.sh up cdc``)
on a fresh database and lakehouse of its own, seeds the store (the shared dataset when present, else the
generated sample), lands it once by batch, starts ``apparel stream`` and waits until it has caught up. Then, per
rate, ``apparel simulate`` places orders for the duration (its log has each order's commit time), and after the
stream has caught up again:

- **latency** per order: the micro-batch that landed its insert event (``bronze.cdc_orders._batch_id``) and the
  time that batch finished, the live mart included (``ops.stream_batches.finished_at``), minus the order's
  commit time. Split into *pickup* (commit -> the batch started: Debezium, Kafka, the trigger wait) and
  *processing* (the batch's own time), and reported beside the reference measured in the same run: the
  micro-batches that carried only heartbeats (Spark's floor for a batch that does nothing). Also the *silver*
  latency: until the silver run that applied the batch recorded it (``ops.silver_batches.consumed_at``);
- **lag**: the most messages the stream was behind while the simulator ran, and how long it needed to catch up
  after the simulator stopped (a rate is sustained when that stays within two micro-batches), and how long silver
  needed to apply everything after that;
- **memory**: the peak resident set (VmHWM) of the Kafka broker, Kafka Connect and the stream's JVM.

It prints figures and never asserts them. Usage:

    .venv/bin/python bench/stream_bench.py [--rates 20,100] [--duration 120] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import java_descendants, machine_context, mib, print_table, vm_hwm_kib  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
SHARED = Path(os.environ.get("APPAREL_SHARED_DATASET", ROOT.parent / "shared" / "datasets" / "django_apparel"))


def run(cmd: list[str], env: dict, timeout: float = 1800, capture: bool = True) -> str:
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=capture, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def apparel(env: dict, *args: str, **kw) -> str:
    return run([PY, "-m", "apparel.cli", *args], env, **kw)


def status(env: dict) -> dict:
    """`apparel stream status`, in this process: polling through a new Python process every second would take
    CPU from the stream being measured."""
    from apparel.config import load_settings
    from apparel.stream import status as stream_status

    return stream_status(load_settings(env=env.get("APPAREL_ENV"), environ=env))


def caught_up(env: dict, timeout: float = 900) -> tuple[float, float]:
    """Seconds until the stream has no message left and has finished one more micro-batch after that (the live
    mart has caught up), and until silver (behind the query) has also applied every batch that landed."""
    from apparel.config import load_settings
    from apparel.jobs.stream import read_status, silver_caught_up

    settings = load_settings(env=env.get("APPAREL_ENV"), environ=env)
    start = time.monotonic()
    live = None
    while time.monotonic() - start < timeout:
        st = status(env)
        if st.get("running") is False:
            raise SystemExit("the stream stopped; see its log")
        if st.get("lag_messages") == 0:
            seen = st.get("batch_id")
            while time.monotonic() - start < timeout:
                st = read_status(settings)
                if live is None and st.get("batch_id") is not None and seen is not None and st["batch_id"] > seen:
                    live = time.monotonic() - start
                if live is not None and silver_caught_up(st):
                    return live, time.monotonic() - start
                time.sleep(0.5)
        time.sleep(1)
    raise SystemExit(f"the stream did not catch up in {timeout:.0f} s")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def jvm_pids(settings_env: dict) -> dict[str, int]:
    out = {}
    for name, pidfile in (("Kafka broker", ROOT / ".services" / "kafka" / "kafka.pid"),
                          ("Kafka Connect", ROOT / ".services" / "connect" / "connect.pid")):
        try:
            out[name] = int(pidfile.read_text())
        except (OSError, ValueError):
            pass
    try:
        stream_pid = int((Path(settings_env["APPAREL_STREAM_STATE_DIR"]) / "stream.pid").read_text())
        jvms = java_descendants(stream_pid)
        if jvms:
            out["stream (Spark driver)"] = jvms[0]
    except (OSError, ValueError):
        pass
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20,100", help="orders per second to try, comma-separated")
    parser.add_argument("--duration", type=int, default=120, help="seconds of orders per rate")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and the capture")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    work = Path(tempfile.mkdtemp(prefix="apparel-stream-bench-"))
    tag = uuid.uuid4().hex[:8]
    server = run(["bash", "scripts/postgres.sh", "start"], dict(os.environ)).strip().splitlines()[-1]
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE bench_{tag}")
    db = server.rsplit("/", 1)[0] + f"/bench_{tag}"
    env = {**os.environ, "APPAREL_ENV": "local", "APPAREL_STORE_DB": db, "TZ": "UTC",
           "APPAREL_LAKEHOUSE": str(work / "lakehouse"), "APPAREL_LANDING": str(work / "landing"),
           "APPAREL_REPORTS": str(work / "reports"), "APPAREL_CDC_TOPIC_PREFIX": f"bench{tag}",
           "APPAREL_CDC_SLOT": f"bench{tag}", "APPAREL_STREAM_CHECKPOINT": str(work / "checkpoint"),
           "APPAREL_STREAM_STATE_DIR": str(work / "stream")}
    batch_env = {**env, "APPAREL_CDC": ""}
    env["APPAREL_CDC"] = "1"
    results, memory = [], {}
    was_up = subprocess.run(["bash", "scripts/services.sh", "status", "cdc"], env=env, cwd=ROOT,
                            capture_output=True).returncode == 0
    try:
        source = ["--dataset", str(SHARED)] if SHARED.is_dir() else []
        print(f"[bench] seeding {'the shared dataset' if source else 'the generated sample'} and one batch run",
              flush=True)
        apparel(batch_env, "seed", *(source or ["--scale", "1"]))
        apparel(batch_env, "run")
        print("[bench] starting the capture (scripts/services.sh up cdc) and the stream", flush=True)
        run(["bash", "scripts/services.sh", "up", "cdc"], env)
        apparel(env, "stream", "start", timeout=600)
        print(f"[bench] initial snapshot applied in {caught_up(env)[1]:.0f} s", flush=True)
        for rate in rates:
            log = work / f"sim-{rate:g}.jsonl"
            print(f"[bench] {rate:g} orders/s for {args.duration} s", flush=True)
            sim = subprocess.Popen([PY, "-m", "apparel.cli", "simulate", "--rate", str(rate), "--duration",
                                    str(args.duration), "--log", str(log), "--json"], env=env, cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            max_lag = 0
            while sim.poll() is None:
                st = status(env)
                max_lag = max(max_lag, st.get("lag_messages") or 0)
                for name, pid in jvm_pids(env).items():
                    memory[name] = max(memory.get(name, 0), vm_hwm_kib(pid) or 0)
                time.sleep(2)
            report = json.loads(sim.stdout.read())
            drain, silver_drain = caught_up(env)
            results.append({"rate": rate, "report": report, "log": log, "max_lag": max_lag, "drain": drain,
                            "silver_drain": silver_drain})
        for name, pid in jvm_pids(env).items():
            memory[name] = max(memory.get(name, 0), vm_hwm_kib(pid) or 0)
        latencies = measure(env, results)
    finally:
        if not args.keep:
            subprocess.run([PY, "-m", "apparel.cli", "stream", "stop"], env=env, cwd=ROOT, capture_output=True)
            subprocess.run([PY, "-m", "apparel.cli", "cdc", "drop"], env=env, cwd=ROOT, capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
            if not was_up:  # ends what it started (the PostgreSQL server stays, as after the tests)
                subprocess.run(["bash", "scripts/services.sh", "down", "cdc"], env=env, cwd=ROOT, capture_output=True)

    print()
    for k, v in machine_context():
        print(f"{k}: {v}")
    floor = latencies.pop("floor")
    print(f"\nreference (same run): a micro-batch with only heartbeats takes p50 {floor['p50']:.2f} s, "
          f"p95 {floor['p95']:.2f} s (Spark's floor for a batch that writes nothing)")
    rows = []
    for r in results:
        lat = latencies[r["rate"]]
        rows.append([f"{r['rate']:g}", f"{r['report']['achieved_rate']:.1f}", str(lat["n"]),
                     f"{lat['p50']:.1f}", f"{lat['p95']:.1f}", f"{lat['max']:.1f}",
                     f"{lat['pickup_p50']:.1f}", f"{lat['proc_p50']:.1f}",
                     f"{lat['proc_p50'] / floor['p50']:.1f}x" if floor["p50"] else "-",
                     f"{lat['silver_p50']:.1f}", f"{lat['silver_p95']:.1f}",
                     str(r["max_lag"]), f"{r['drain']:.0f}", f"{r['silver_drain']:.0f}"])
    print_table(["rate/s", "achieved", "orders", "p50 s", "p95 s", "max s", "pickup p50", "batch p50",
                 "batch/floor", "silver p50", "silver p95", "max lag msgs", "catch-up s", "silver catch-up s"], rows)
    print("\npeak resident memory (VmHWM):")
    for name, kib in memory.items():
        print(f"  {name:<24} {mib(kib)}")
    sustained = [r["rate"] for r in results if r["drain"] <= 2 * max(latencies[r["rate"]]["proc_p50"], 1)]
    print(f"\nsustained (caught up within two micro-batches after the run): "
          f"{', '.join(f'{x:g}/s' for x in sustained) or 'none of the rates tried'}")
    return 0


def measure(env: dict, results: list[dict]) -> dict:
    """Per rate: commit -> visible latencies from the simulator's log, the events' batches and the batches'
    finish times; plus the heartbeat-only batches' durations (the floor)."""
    from pyspark.sql import functions as F

    from apparel.catalog import Catalog
    from apparel.config import load_settings
    from apparel.spark import get_spark

    settings = load_settings(env="local", environ=env)
    spark = get_spark(settings)
    catalog = Catalog(settings)
    events = catalog.read(spark, "bronze.cdc_orders").where(F.col("op") == "c").select(
        F.col("_key_after").alias("order_id"), "_batch_id")
    batches = catalog.read(spark, "ops.stream_batches").select(
        F.col("landed_batch").alias("_batch_id"), "started_at", "finished_at")
    # silver applies a batch in a run of its own, later: when that run recorded it
    applied = catalog.read(spark, "ops.silver_batches").where(F.col("table") == "cdc_orders").select(
        "batch_id", "consumed_at").withColumnRenamed("batch_id", "_batch_id")
    seen = {r["order_id"]: (r["started_at"], r["finished_at"], r["consumed_at"])
            for r in events.join(batches, "_batch_id").join(applied, "_batch_id", "left").collect()}
    out = {}
    for r in results:
        total, pickup, proc, silver = [], [], [], []
        for line in r["log"].read_text().splitlines():
            entry = json.loads(line)
            if entry["action"] != "order" or entry["order_id"] not in seen:
                continue
            committed = datetime.fromisoformat(entry["committed_at"]).astimezone(timezone.utc).replace(tzinfo=None)
            started, finished, consumed = seen[entry["order_id"]]
            total.append((finished - committed).total_seconds())
            pickup.append((started - committed).total_seconds())
            proc.append((finished - started).total_seconds())
            if consumed is not None:
                silver.append((consumed - committed).total_seconds())
        out[r["rate"]] = {"n": len(total), "p50": statistics.median(total), "p95": pct(total, 95),
                          "max": max(total), "pickup_p50": statistics.median(pickup),
                          "proc_p50": statistics.median(proc),
                          "silver_p50": statistics.median(silver) if silver else float("nan"),
                          "silver_p95": pct(silver, 95) if silver else float("nan")}
    st = json.loads((Path(env["APPAREL_STREAM_STATE_DIR"]) / "status.json").read_text())
    idle = [float(x) for x in st.get("idle_batch_seconds", [])]
    out["floor"] = {"p50": statistics.median(idle) if idle else 0.0, "p95": pct(idle, 95) if idle else 0.0}
    return out


if __name__ == "__main__":
    sys.exit(main())
