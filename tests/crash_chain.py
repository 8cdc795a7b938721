"""The kill -9 chain of the crash tests: one lakehouse, `apparel run` started again and again, each run held at the
next crash point (src/apparel/crashpoints.py) and killed there with SIGKILL (its whole process group: Python, the
Spark JVM and its Python workers), then one run that is left to finish. Once a run was killed in silver or gold,
bronze is complete: the runs after it are `apparel run --layers silver,gold`.

After each kill, on the lakehouse as the kill left it (README, *Crash safety*):
- every table reads, at the newest version of its Delta log (read again only when its version moved since the
  kill before: a log with no new entry is the table checked then); the killed commit is not visible (the held table's
  version is the one before the run for ``writing:``, one more for ``committed:``);
- at ``writing:`` the table's folder held a data file no log entry names (the kill did land inside a commit);
- bronze holds no row twice: per incremental table no key more often than the source has it, and each snapshot
  table holds one batch.
The test then compares the finished lakehouse with an uninterrupted run's (``assert_same_lakehouse``).

Each step's figures go to the log line ``[crash] ...`` and into :class:`Kill` for the tests' assertions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from apparel.catalog import TABLES, Catalog
from apparel.config import PROJECT_ROOT, Settings
from apparel.crashpoints import ENV_MARKER, ENV_POINT
from apparel.schemas import SOURCES
from apparel.spark import jvm_class
from apparel.store import StoreDB
from conftest import in_parallel

# (case, layer, crash point), in the order one lakehouse passes them: a point is reached again after a kill, since
# the killed run recorded nothing (bronze finds orders not landed, silver and gold find no finished run of theirs).
# In silver, the first table it writes (dim_location, right after the contract): a run held there has done the
# least before it dies (the fact tables come after the dimensions: a few seconds later, alone), and the run after it
# redoes silver whole either way
CHAIN = [
    ("during extraction", "bronze", "extracted:bronze.orders"),
    ("during a commit", "bronze", "writing:bronze.orders"),
    ("between commits", "bronze", "committed:bronze.orders"),
    ("during a commit", "silver", "writing:silver.dim_location"),
    ("between commits", "silver", "committed:silver.dim_location"),
    ("during a commit", "gold", "writing:gold.dm_sales_monthly"),
    ("between commits", "gold", "committed:gold.dm_sales_monthly"),
]
# on s3a://, the points where the object store behaves otherwise than a local disk: during extraction, the landing
# area written (no rename there), and in every layer a commit's data files stored while its log entry is not (the
# log entry is a PUT). Between commits nothing is in flight, the same on either store: that case, in each layer, is
# left to the local chain (each run saved is a Spark start and a pass over the shared dataset: 60-90 s on CI)
S3_CHAIN = [c for c in CHAIN if c[0] != "between commits"]
LINEAGE = ("_ingested_at", "_source", "_batch_id")  # bronze's columns of when and how a row was landed
REACH_TIMEOUT = 900  # seconds for a run to reach its point (a cold run takes 150-400 s on the CI machine)


@dataclass
class Kill:
    case: str
    layer: str
    point: str
    seconds: float                      # from the run's start to the kill
    before: dict[str, int | None]       # every table's version before the run
    after: dict[str, int | None]        # and after the kill
    stray_files: list[str] = field(default_factory=list)  # data files no log entry names, at the kill
    problems: list[str] = field(default_factory=list)

    @property
    def table(self) -> str:
        return self.point.split(":", 1)[1]

    def row(self, store: str) -> str:
        result = "; ".join(self.problems) if self.problems else "survived"
        held = self.table
        return (f"[crash] {self.case:<17} {self.layer:<6} {store:<5} {self.point:<33} killed after "
                f"{self.seconds:5.1f}s, {held} v{self.before[held]} -> v{self.after[held]}, "
                f"{len(self.stray_files)} uncommitted file(s): {result}")


def _files(spark, root: str) -> list[str]:
    """Every file under ``root`` (recursively), through Hadoop's file system (local disk and s3a alike)."""
    path = jvm_class(spark, "org.apache.hadoop.fs.Path")(root)
    fs = path.getFileSystem(spark._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return []
    found, it = [], fs.listFiles(path, True)
    while it.hasNext():
        found.append(it.next().getPath().toString())
    return found


def stray_data_files(spark, catalog: Catalog, name: str) -> list[str]:
    """Data files in the table's folder that no entry of its Delta log adds: a commit's files before its log entry."""
    files = _files(spark, catalog.path(name))
    logs = [f for f in files if "/_delta_log/" in f and f.endswith(".json")]
    added: set[str] = set()
    if logs:
        adds = spark.read.json(logs).where("add IS NOT NULL").select("add.path").collect()
        added = {r["path"].rsplit("/", 1)[-1] for r in adds}
    return sorted(f for f in files if f.endswith(".parquet") and "/_delta_log/" not in f
                  and f.rsplit("/", 1)[-1] not in added)


def versions(spark, catalog: Catalog) -> dict[str, int | None]:
    return {n: catalog.version(spark, n) for n in sorted(TABLES)}


def chain_layers(chain) -> list[str | None]:
    """The ``--layers`` of each run of ``chain`` and of the last one (None: all layers). Once a run was killed past
    bronze, bronze is complete and the store unchanged: the later runs take `silver,gold` instead of landing nothing
    again (a bronze pass that finds nothing new)."""
    layers, past_bronze = [], False
    for _, layer, _ in chain:
        layers.append("silver,gold" if past_bronze else None)
        past_bronze = past_bronze or layer != "bronze"
    return layers + ["silver,gold" if past_bronze else None]


def _start(env: dict[str, str], run_date: str, point: str | None, marker: Path, out: Path,
           layers: str | None = None) -> subprocess.Popen:
    crash = {ENV_POINT: point, ENV_MARKER: str(marker)} if point else {}
    child_env = {k: v for k, v in env.items() if k not in (ENV_POINT, ENV_MARKER)} | crash
    with out.open("w") as f:
        return subprocess.Popen([sys.executable, "-m", "apparel.cli", "run", "--run-date", run_date,
                                 *(["--layers", layers] if layers else [])],
                                cwd=PROJECT_ROOT, env=child_env, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _tail(out: Path, lines: int = 40) -> str:
    return "\n".join(out.read_text(errors="replace").splitlines()[-lines:])


def _kill(proc: subprocess.Popen) -> None:
    with_group = True
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        with_group = False
    proc.wait(timeout=60)
    assert with_group, "the run's process group was gone before the kill"


def _bronze_problems(spark, catalog: Catalog, settings: Settings, names: set[str]) -> list[str]:
    """Bronze tables among ``names`` that hold a key more often than the source (incremental tables) or more than
    one batch (snapshots)."""
    problems = []
    store = StoreDB(settings.store_db)
    for name in sorted(n for n in names if n.startswith("bronze.") and n.split(".")[1] in SOURCES):
        table = SOURCES[name.split(".")[1]]
        df = catalog.read(spark, name)
        if table.incremental:
            key = list(table.key)
            cols = ", ".join(key)
            source = pd.DataFrame(store.query(f"SELECT {cols}, count(*) FROM {table.name} GROUP BY {cols}"),
                                  columns=key + ["source"])
            landed = df.groupBy(*key).count().toPandas().rename(columns={"count": "bronze"})
            both = landed.merge(source, on=key, how="left").fillna({"source": 0})
            twice = both[both["bronze"] > both["source"]]
            if len(twice):
                problems.append(f"{name}: {len(twice)} key(s) more often than in the source, e.g. "
                                f"{twice.head(3).to_dict('records')}")
        else:
            batches = df.select("_batch_id").distinct().count()
            if batches != 1:
                problems.append(f"{name}: a snapshot table holds {batches} batches")
    return problems


def kill_chain(spark, settings: Settings, env: dict[str, str], run_date: str, folder: Path, store: str,
               log=print, chain=CHAIN) -> tuple[list[Kill], str]:
    """Run ``chain`` on the lakehouse of ``settings`` (``env``: the runs' environment, the same lakehouse), then
    one run to the end; returns the kills and the last run's output. Fails at once when a run ends before its
    point, or the last run fails."""
    catalog = Catalog(settings)
    folder.mkdir(parents=True, exist_ok=True)
    kills = []
    before = versions(spark, catalog)
    # the version of each table found readable and, in bronze, without a duplicate after an earlier kill: a table
    # still at that version (its log has no new entry, not even a partial one) is the same table, checked already
    checked: dict[str, int] = {}
    layers = chain_layers(chain)
    for i, (case, layer, point) in enumerate(chain, 1):
        marker, out = folder / f"marker-{i}", folder / f"run-{i}.log"
        started = time.monotonic()
        proc = _start(env, run_date, point, marker, out, layers[i - 1])
        while not marker.exists():
            rc = proc.poll()
            assert rc is None, f"run {i} ended ({rc}) without reaching {point}:\n{_tail(out)}"
            if time.monotonic() - started > REACH_TIMEOUT:
                _kill(proc)
                raise AssertionError(f"run {i} did not reach {point} within {REACH_TIMEOUT}s:\n{_tail(out)}")
            time.sleep(0.2)
        name = point.split(":", 1)[1]
        stray: list[str] = []
        if point.startswith("writing:"):
            # the held task's sibling writes its file: wait for it to be in the folder, then kill
            stray = stray_data_files(spark, catalog, name)
            while not stray:
                if time.monotonic() - started > REACH_TIMEOUT:
                    _kill(proc)
                    raise AssertionError(f"run {i}: no data file of {name} appeared while its commit was held")
                time.sleep(0.5)
                stray = stray_data_files(spark, catalog, name)
        _kill(proc)
        kill = Kill(case, layer, point, round(time.monotonic() - started, 1), before, versions(spark, catalog),
                    stray)
        expect = before[name] if point.startswith(("writing:", "extracted:")) else \
            (0 if before[name] is None else before[name] + 1)
        if kill.after[name] != expect:
            kill.problems.append(f"{name} is at version {kill.after[name]}, expected {expect}")

        def unreadable(n: str) -> str | None:
            try:
                catalog.read(spark, n).count()
            except Exception as e:  # noqa: BLE001 - the finding is the point
                return f"{n} does not read: {str(e).splitlines()[0]}"
            return None

        changed = {n for n, v in kill.after.items() if v is not None and checked.get(n) != v}
        found = in_parallel(sorted(changed), unreadable)
        kill.problems += [p for p in found.values() if p]
        kill.problems += _bronze_problems(spark, catalog, settings, changed)
        checked |= {n: kill.after[n] for n in changed if not found[n]}
        log(kill.row(store))
        kills.append(kill)
        before = kill.after  # nothing but the runs writes this lakehouse: the next run starts from what this kill left
    out = folder / "run-final.log"
    proc = _start(env, run_date, None, folder / "marker-final", out, layers[-1])
    rc = proc.wait(timeout=REACH_TIMEOUT)
    assert rc == 0, f"the run after the kills failed ({rc}):\n{_tail(out)}"
    return kills, out.read_text(errors="replace")


def compared_tables(spark, catalog: Catalog) -> list[str]:
    """The tables a finished lakehouse is compared on: bronze, silver, quarantine and gold (the ops tables log
    runs, which differ by nature)."""
    return [n for n in sorted(TABLES) if n.split(".")[0] in ("bronze", "silver", "quarantine", "gold")
            and catalog.version(spark, n) is not None]


def without_lineage(df):
    return df.drop(*[c for c in LINEAGE if c in df.columns])


def assert_every_kill_survived(kills: list[Kill], store: str, chain=CHAIN) -> None:
    """The chain went through every point of ``chain``, no kill left a problem, and each kill during a commit
    found the commit's first data file written while its log entry was not."""
    assert [(k.case, k.layer, k.point) for k in kills] == chain
    assert not [k.row(store) for k in kills if k.problems]
    assert all(k.stray_files for k in kills if k.point.startswith("writing:"))


def assert_same_lakehouse(spark, ours: Catalog, uninterrupted: Catalog) -> None:
    """Every bronze, silver, quarantine and gold table of ``ours`` equals the uninterrupted run's, type-aware and
    in any row order, but for bronze's lineage columns (the batch and time a row landed)."""
    from conftest import assert_same_rows

    names = compared_tables(spark, uninterrupted)
    assert compared_tables(spark, ours) == names and len(names) >= 25
    in_parallel(names, lambda n: assert_same_rows(without_lineage(ours.read(spark, n)),
                                                  without_lineage(uninterrupted.read(spark, n))))
