"""The replicated sharded store (docs/topology.md) under load: each shard's standby lag while `apparel simulate`
writes orders through the coordinator, then the failover time of a shard whose primary is killed.

It starts its own store in /var/tmp (scripts/store-shards.sh with APPAREL_STORE_STANDBYS=1: a coordinator, 2
shards of a primary and a standby each, the pg_auto_failover monitor, on free ports), seeds the generated sample
(scale 1) through the coordinator, then:

- **standby lag**: while the simulator places orders at each rate for the duration, every 0.25 s each primary's
  `pg_stat_replication` (`replay_lag`, and the bytes between what it sent and what its standby replayed). The
  reference, measured in the same run, is the simulator's own interval between two orders (1 / rate);
- **failover**: shard 2's primary killed (SIGKILL to its keeper and PostgreSQL: `store-shards.sh stop-node 2 0
  --immediate`), then an order written through the coordinator every 0.2 s until one commits. Reported beside the
  reference: the failover timeout the monitor was given (APPAREL_STORE_FAILOVER_TIMEOUT_MS), which no failover can
  beat; then the time until the old primary, restarted, is a standby again.

It prints figures and never asserts them. Usage:

    .venv/bin/python bench/failover_bench.py [--rates 20,100] [--duration 30] [--timeout-ms 5000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine_context, print_table  # noqa: E402

from apparel.shards import free_base_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
LAG_SQL = ("SELECT application_name, COALESCE(EXTRACT(EPOCH FROM replay_lag), 0), "
           "pg_wal_lsn_diff(sent_lsn, replay_lsn) FROM pg_stat_replication")




def run(cmd: list[str], env: dict, timeout: float = 1800) -> str:
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


def primaries(base: int) -> list[str]:
    return [f"postgresql://postgres@127.0.0.1:{base + k},127.0.0.1:{base + k + 10}/apparel"
            f"?target_session_attrs=read-write" for k in (1, 2)]


def sample_lag(urls: list[str], stop: threading.Event, out: list[tuple[float, float]]) -> None:
    import psycopg

    conns = [psycopg.connect(u, autocommit=True) for u in urls]
    try:
        while not stop.is_set():
            for conn in conns:
                for _name, seconds, lag_bytes in conn.execute(LAG_SQL).fetchall():
                    out.append((float(seconds), float(lag_bytes or 0)))
            time.sleep(0.25)
    finally:
        for conn in conns:
            conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20,100", help="orders per second, comma-separated")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--timeout-ms", type=int, default=5000, help="APPAREL_STORE_FAILOVER_TIMEOUT_MS")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    folder = Path(f"/var/tmp/apparel-bench-failover-{uuid.uuid4().hex[:8]}")
    base = free_base_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPAREL_")} | {
        "APPAREL_ENV": "local", "TZ": "UTC", "APPAREL_LANDING": str(folder / "landing"),
        "APPAREL_STORE_SHARDS": "2", "APPAREL_STORE_STANDBYS": "1", "APPAREL_STORE_SHARDS_DIR": str(folder / "pg"),
        "APPAREL_STORE_SHARDS_PORT": str(base), "APPAREL_STORE_FAILOVER_TIMEOUT_MS": str(args.timeout_ms)}
    try:
        started = time.perf_counter()
        coordinator = run(["bash", "scripts/store-shards.sh", "start"], env).strip().splitlines()[-1]
        start_s = time.perf_counter() - started
        env["APPAREL_STORE_DB"] = coordinator
        run([PY, "-m", "apparel.cli", "seed", "--scale", "1"], env)
        lag_rows = []
        for rate in [float(r) for r in args.rates.split(",")]:
            print(f"[bench] simulate {rate:g} orders/s for {args.duration:g} s", file=sys.stderr)
            samples: list[tuple[float, float]] = []
            stop = threading.Event()
            watcher = threading.Thread(target=sample_lag, args=(primaries(base), stop, samples))
            watcher.start()
            try:
                run([PY, "-m", "apparel.cli", "simulate", "--rate", f"{rate:g}", "--duration", f"{args.duration:g}",
                     "--seed", "3"], env)
            finally:
                stop.set()
                watcher.join()
            seconds = sorted(s for s, _ in samples)
            p95 = seconds[int(0.95 * (len(seconds) - 1))] if seconds else float("nan")
            lag_rows.append([f"{rate:g}/s", str(len(samples)), f"{statistics.median(seconds) * 1000:.1f}",
                             f"{p95 * 1000:.1f}", f"{max(seconds) * 1000:.1f}",
                             f"{max(b for _, b in samples) / 1024:.0f}", f"{1000 / rate:.0f}",
                             f"{p95 * rate:.2f}"])
        # failover
        import psycopg

        killed = time.perf_counter()
        run(["bash", "scripts/store-shards.sh", "stop-node", "2", "0", "--immediate"], env)
        tries = 0
        while True:
            tries += 1
            try:
                with psycopg.connect(coordinator, connect_timeout=2) as conn:
                    conn.execute("INSERT INTO orders (order_id, order_date) "
                                 "SELECT max(order_id) + 1, now() FROM orders")
                break
            except psycopg.Error:
                if time.perf_counter() - killed > 300:
                    raise SystemExit("no write within 300 s of the kill")
                time.sleep(0.2)
        failover = time.perf_counter() - killed
        restarted = time.perf_counter()
        run(["bash", "scripts/store-shards.sh", "start-node", "2", "0"], env)
        while "secondary" not in next((line for line in run(["bash", "scripts/store-shards.sh", "state"], env)
                                       .splitlines() if line.startswith("shard_2_node_0")), ""):
            if time.perf_counter() - restarted > 300:
                raise SystemExit("the old primary did not rejoin within 300 s")
            time.sleep(0.5)
        rejoin = time.perf_counter() - restarted
        for key, value in machine_context():
            print(f"{key}: {value}")
        print(f"store start (coordinator, monitor, 2 shards x 2 nodes): {start_s:.1f} s")
        print("\nstandby lag while the simulator writes (pg_stat_replication.replay_lag, both shards):")
        print_table(["rate", "samples", "median ms", "p95 ms", "max ms", "max behind KiB", "order interval ms",
                     "p95 / interval"], lag_rows)
        print("\nfailover of shard 2 (its primary killed):")
        print_table(["kill -> first write through the coordinator s", "failover timeout s", "ratio", "tries",
                     "old primary a standby again s"],
                    [[f"{failover:.1f}", f"{args.timeout_ms / 1000:g}", f"{failover * 1000 / args.timeout_ms:.1f}x",
                      str(tries), f"{rejoin:.1f}"]])
    finally:
        if not args.keep:
            subprocess.run(["bash", "scripts/store-shards.sh", "stop"], env=env, cwd=ROOT, capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
