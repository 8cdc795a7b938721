"""Class data sharing for the Spark driver JVM: start each session from an archive of the classes it loads.

A Spark driver loads thousands of classes (Spark, Scala, Delta, Hadoop) before its first query; on 2 cores that
is a large part of Spark's floor (session start, one tiny Delta write and read: 25.8 s without an archive, 15.0 s
with one, measured 2026-11-29). The JDK's application class data sharing (AppCDS) maps those classes, already
parsed and verified, from an archive file instead. The archive is specific to the Java build and to the exact
class path, down to each jar's size and modification time (the JVM checks both, and a venv or jar cache that is
made again, as on every CI run, changes them), so it is named by both:

    <spark.cds_dir>/spark-<where>-<what>.jsa

``where`` hashes the Java release, pyspark's version and jars folder, and the jar paths; ``what`` hashes the size and
modification time of every one of those jars. Building an archive deletes the older ones of the same ``where``
(about 200 MiB each): they can no longer be used.

``apparel cds`` builds it (once; later calls print its path): a child process starts a session with
``-XX:ArchiveClassesAtExit``, runs a small workload (a Delta write, read, MERGE, join and aggregation), stops,
and the JVM writes the archive as it exits, into a temporary name renamed into place. Every session built by
:func:`apparel.spark.get_spark` in local mode (the CLI, the tests, the stream, the notebooks) and every local
spark-submit of the Airflow operator then starts with ``-XX:SharedArchiveFile`` when the archive for its class
path exists (``spark.class_data_sharing``, on by default). A JVM that cannot use the archive (another Java, a
jar that changed) starts as it would without one: the JDK checks it, and its warnings are switched off.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from apparel.config import Settings, _truthy, resolve_path
from apparel.errors import SetupError

QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def enabled(settings: Settings) -> bool:
    return _truthy(settings.spark.get("class_data_sharing", True))


def java_home() -> Path | None:
    """The home of the Java that pyspark launches (:func:`apparel.jars.java_executable`), or None without one."""
    from apparel.jars import java_executable

    try:
        return Path(os.path.realpath(java_executable())).parent.parent
    except SetupError:
        return None


def archive_path(settings: Settings, jars: list[str]) -> Path:
    """Where the archive for this Java and class path lives (whether it exists or not)."""
    import pyspark

    from apparel.jars import pyspark_jars_dir

    home = java_home()
    release = (home / "release").read_text(errors="replace") if home and (home / "release").exists() else str(home)
    # Spark's own jars are on the class path too, from this venv's pyspark
    spark_dir = pyspark_jars_dir().resolve()
    where = _digest([release, pyspark.__version__, str(spark_dir), *jars], 12)
    what = _digest([_stamp(jar) for jar in [*sorted(str(j) for j in spark_dir.glob("*.jar")), *jars]], 8)
    folder = resolve_path(str(settings.spark.get("cds_dir") or "~/.cache/apparel/cds"))
    return Path(folder) / f"spark-{where}-{what}.jsa"


def _digest(parts: list[str], length: int) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:length]


def _stamp(jar: str) -> str:
    """What the JVM checks of a class path entry before it maps an archive: its size and modification time."""
    try:
        st = os.stat(jar)
    except OSError:
        return f"{jar} missing"
    return f"{jar} {st.st_size} {st.st_mtime_ns}"


def prune(path: Path) -> list[Path]:
    """Delete the archives of ``path``'s class path built for older jars (another ``what``); return them."""
    where = path.stem.rsplit("-", 1)[0]
    stale = [old for old in path.parent.glob(f"{where}-*.jsa") if old != path]
    for old in stale:
        old.unlink(missing_ok=True)
    return stale


def java_options(settings: Settings, jars: list[str]) -> str:
    """The driver's JVM flags that use the archive, or "" (switched off, or not built for this class path)."""
    if not enabled(settings):
        return ""
    path = archive_path(settings, jars)
    return f"-XX:SharedArchiveFile={path} {QUIET}" if path.exists() else ""


def build(settings: Settings, env: str | None, rebuild: bool = False, log=print) -> Path:
    """Build the archive for ``settings``' class path in a child process, unless it exists; return its path."""
    from apparel.jars import jars_for

    jars = jars_for(settings, log=log)
    path = archive_path(settings, jars)
    if path.exists() and not rebuild:
        log(f"[cds] up to date: {path}")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # the JVM creates it
    log(f"[cds] building the class archive of a Spark session ({len(jars)} jars; about a minute)")
    started = time.monotonic()
    cmd = [sys.executable, "-m", "apparel.cds", tmp] + (["--env", env] if env else [])
    child = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if child.returncode != 0 or not Path(tmp).exists() or Path(tmp).stat().st_size == 0:
        Path(tmp).unlink(missing_ok=True)
        tail = "\n".join((child.stdout + child.stderr).strip().splitlines()[-15:])
        raise SetupError(f"the class archive was not written (exit {child.returncode}):\n{tail}")
    os.replace(tmp, path)
    for old in prune(path):
        log(f"[cds] deleted {old.name}: built for jars that have changed since")
    log(f"[cds] {path} ({path.stat().st_size / 2**20:.0f} MiB) in {time.monotonic() - started:.0f} s")
    return path


def _workload(spark, folder: str) -> None:
    """What a pipeline run loads classes for: Delta write, read, MERGE, a join, an aggregation, a window."""
    from delta.tables import DeltaTable
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    base = spark.range(200).select(F.col("id"), (F.col("id") % 7).alias("k"), F.lit("x").alias("s"),
                                   F.current_timestamp().alias("ts"), (F.col("id") * 1.5).cast("decimal(18,2)")
                                   .alias("amount"))
    base.write.format("delta").partitionBy("k").save(f"{folder}/t")
    table = DeltaTable.forPath(spark, f"{folder}/t")
    table.alias("t").merge(base.where("id < 50").withColumn("s", F.lit("y")).alias("u"), "t.id = u.id") \
        .whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
    df = spark.read.format("delta").load(f"{folder}/t")
    dim = spark.createDataFrame([(k, f"name{k}") for k in range(7)], "k LONG, name STRING")
    joined = df.join(F.broadcast(dim), "k").groupBy("name").agg(F.sum("amount"), F.countDistinct("id"))
    ranked = df.withColumn("r", F.row_number().over(Window.partitionBy("k").orderBy(F.col("amount").desc())))
    joined.collect()
    ranked.where("r = 1").collect()
    spark.sql(f"DESCRIBE HISTORY delta.`{folder}/t`").collect()


def _child(tmp: str, env: str | None) -> int:
    """In the child: a session that dumps its classes to ``tmp`` when its JVM exits; wait for that exit."""
    from pyspark import SparkContext

    from apparel.config import load_settings
    from apparel.spark import get_spark

    settings = load_settings(env=env)
    spark = get_spark(settings, app_name="apparel-cds", cds=f"-XX:ArchiveClassesAtExit={tmp} {QUIET}")
    with tempfile.TemporaryDirectory(prefix="apparel-cds-") as folder:
        _workload(spark, folder)
        spark.stop()
    proc = SparkContext._gateway.proc  # the JVM writes the archive once its stdin closes and it exits
    SparkContext._gateway.shutdown()
    if proc.stdin:
        proc.stdin.close()
    proc.wait(timeout=600)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(_child(args[0], args[2] if len(args) > 2 and args[1] == "--env" else None))
