"""Bronze's extraction from one PostgreSQL database versus a sharded store (docs/topology.md), at a given scale of
the generated sample (scale 10: 70,000 orders).

It starts its own servers in /var/tmp (one with scripts/postgres.sh, a coordinator with 2 shards with
scripts/store-shards.sh, on free ports), seeds both with `apparel seed --scale N` (into the coordinator, which
routes the orders to the shards), then runs `apparel run --layers bronze` on a fresh lakehouse for each. Per
incremental table it reports bronze's time (JDBC read, checks and the Delta commit, from the run's own line) beside
the reference measured in the same run: the same rows copied out raw with `COPY ... TO STDOUT` (psycopg; the shards
in parallel, as bronze reads them), as a ratio. It prints figures and never asserts them. Usage:

    .venv/bin/python bench/shards_bench.py [--scale 10] [--keep]
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
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import free_ports, machine_context, print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")
TABLES = ("orders", "order_details")
LINE = re.compile(r"^\s*\S*\s+(orders|order_details)\s+([\d,]+) new rows.*\(([\d.]+)s\)")


def run(cmd: list[str], env: dict, timeout: float = 3600, with_log: bool = False) -> str:
    """The command's output (``with_log``: and its log, stderr)."""
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr if with_log else proc.stdout


def reader(url: str) -> str:
    return url.replace("://apparel@", "://apparel_reader@", 1)


def copy_out(urls: list[str], table: str) -> tuple[int, float]:
    """Rows and seconds to copy ``table`` out of each of ``urls`` (in parallel), raw."""
    import psycopg

    def one(url: str) -> int:
        size = 0
        with psycopg.connect(url) as conn, conn.cursor().copy(f"COPY {table} TO STDOUT") as copy:
            for block in copy:
                size += len(block)
        return size

    started = time.perf_counter()
    with ThreadPoolExecutor(len(urls)) as pool:
        list(pool.map(one, urls))
    seconds = time.perf_counter() - started
    rows = 0
    for url in urls:
        with psycopg.connect(url) as conn:
            rows += conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return rows, seconds


def bronze(env: dict, lake: Path) -> tuple[dict[str, tuple[int, float]], float]:
    env = env | {"APPAREL_LAKEHOUSE": str(lake / "lakehouse")}
    started = time.perf_counter()
    out = run([PY, "-m", "apparel.cli", "run", "--layers", "bronze"], env, with_log=True)
    wall = time.perf_counter() - started
    found = {m.group(1): (int(m.group(2).replace(",", "")), float(m.group(3)))
             for m in map(LINE.match, out.splitlines()) if m}
    missing = set(TABLES) - set(found)
    if missing:
        raise SystemExit(f"no bronze line for {', '.join(sorted(missing))} in:\n{out[-3000:]}")
    return found, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="leave the servers and folders in place")
    args = parser.parse_args()
    folder = Path(f"/var/tmp/apparel-bench-shards-{uuid.uuid4().hex[:8]}")  # the postgres user must reach it
    work = Path(tempfile.mkdtemp(prefix="apparel-bench-shards-"))
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("APPAREL_")} | {
        "APPAREL_ENV": "local", "TZ": "UTC", "APPAREL_LANDING": str(work / "landing"),
        "APPAREL_REPORTS": str(work / "reports")}
    single_env = base_env | {"APPAREL_PG_DIR": str(folder / "single"), "APPAREL_PG_PORT": str(free_ports(1))}
    shards_env = base_env | {"APPAREL_STORE_SHARDS": "2", "APPAREL_STORE_SHARDS_DIR": str(folder / "sharded"),
                             "APPAREL_STORE_SHARDS_PORT": str(free_ports(3))}
    try:
        single = run(["bash", "scripts/postgres.sh", "start"], single_env).strip().splitlines()[-1]
        coordinator = run(["bash", "scripts/store-shards.sh", "start"], shards_env).strip().splitlines()[-1]
        shard_urls = run(["bash", "scripts/store-shards.sh", "read-urls"], shards_env).split()
        stores = {
            "1 database": (base_env | {"APPAREL_STORE_DB": single, "APPAREL_STORE_READ_DB": reader(single)},
                           [reader(single)]),
            "2 shards": (base_env | {"APPAREL_STORE_DB": coordinator, "APPAREL_STORE_READ_DB": reader(coordinator),
                                     "APPAREL_STORE_SHARD_URLS": " ".join(shard_urls)}, shard_urls),
        }
        rows = []
        for name, (env, urls) in stores.items():
            print(f"[bench] {name}: seeding scale {args.scale:g}", file=sys.stderr)
            run([PY, "-m", "apparel.cli", "seed", "--scale", f"{args.scale:g}"], env)
            print(f"[bench] {name}: apparel run --layers bronze", file=sys.stderr)
            landed, wall = bronze(env, work / name.replace(" ", "_"))
            for table in TABLES:
                n, seconds = landed[table]
                raw_rows, raw = copy_out(urls, table)
                rows.append([name, table, f"{n:,}", f"{seconds:.1f}", f"{raw:.2f}", f"{seconds / raw:.1f}x",
                             f"{wall:.0f}"])
                if raw_rows != n:
                    print(f"[bench] warning: {name} {table}: bronze landed {n:,}, the store holds {raw_rows:,}",
                          file=sys.stderr)
        for key, value in machine_context():
            print(f"{key}: {value}")
        print(f"scale {args.scale:g}")
        print_table(["store", "table", "rows", "bronze s", "raw COPY s", "ratio", "bronze run wall s"], rows)
    finally:
        if not args.keep:
            subprocess.run(["bash", "scripts/store-shards.sh", "stop"], env=shards_env, cwd=ROOT,
                           capture_output=True)
            subprocess.run(["bash", "scripts/postgres.sh", "stop"], env=single_env, cwd=ROOT, capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
