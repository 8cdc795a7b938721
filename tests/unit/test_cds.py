"""Class data sharing (src/apparel/cds.py): which flags a driver JVM gets, for which class path, and that the tests'
own session (scripts/test.sh builds its archive first) started from it."""

from __future__ import annotations

import os
from pathlib import Path

from apparel import cds
from apparel.config import load_settings
from apparel.jars import jars_for
from apparel.orchestration import launch_conf
from apparel.spark import session_conf


def settings_with(tmp_path: Path, **env):
    return load_settings(env="ci", environ={"APPAREL_SPARK_CDS_DIR": str(tmp_path), **env})


def test_the_archive_is_used_only_once_built_and_only_for_its_class_path(tmp_path):
    settings = settings_with(tmp_path)
    jars = ["/cache/a.jar", "/cache/b.jar"]
    path = cds.archive_path(settings, jars)
    assert path.parent == tmp_path and path.suffix == ".jsa"
    assert cds.archive_path(settings, [*jars, "/cache/c.jar"]) != path  # another class path, another archive
    assert cds.java_options(settings, jars) == ""  # not built: the JVM starts as it always did
    assert "SharedArchiveFile" not in session_conf(settings, jars)["spark.driver.extraJavaOptions"]
    path.write_bytes(b"built")
    flags = f"-XX:SharedArchiveFile={path} -Xlog:cds=off -Xlog:cds+dynamic=off"
    assert cds.java_options(settings, jars) == flags
    # the session's driver options keep the project's own (time zone, log4j, the CI's JIT and GC flags)
    opts = session_conf(settings, jars)["spark.driver.extraJavaOptions"]
    assert opts.startswith("-Duser.timezone=UTC ") and "-XX:+UseSerialGC" in opts and opts.endswith(flags)
    # spark-submit (Airflow's operator) gets the same flag; the jars stay on its --driver-class-path
    conf = launch_conf(settings, jars)
    assert conf["spark.driver.extraJavaOptions"].endswith(flags) and "spark.driver.extraClassPath" not in conf
    # switched off: never
    off = settings_with(tmp_path, APPAREL_SPARK_CDS="0")
    assert cds.java_options(off, jars) == ""
    assert "SharedArchiveFile" not in launch_conf(off, jars)["spark.driver.extraJavaOptions"]


def test_a_jar_made_again_gets_a_new_archive_and_building_it_deletes_the_old_one(tmp_path):
    """A venv or jar cache made again (every CI run) keeps the paths but not the modification times, and the JVM
    then refuses the old archive: the name must change, and the unusable 200 MiB file must go."""
    settings = settings_with(tmp_path / "cds")
    jar = tmp_path / "a.jar"
    jar.write_bytes(b"PK")
    old = cds.archive_path(settings, [str(jar)])
    assert cds.archive_path(settings, [str(jar)]) == old  # stable while nothing changes
    os.utime(jar, ns=(jar.stat().st_atime_ns, jar.stat().st_mtime_ns + 10**9))
    new = cds.archive_path(settings, [str(jar)])
    assert new != old and new.stem.rsplit("-", 1)[0] == old.stem.rsplit("-", 1)[0]  # same class path, new jars
    jar.write_bytes(b"PK and more")  # a change of size alone counts too
    assert cds.archive_path(settings, [str(jar)]) not in (old, new)
    other = cds.archive_path(settings, [str(tmp_path / "b.jar")])  # another class path's archive stays
    old.parent.mkdir(parents=True)
    for path in (old, other, new):
        path.write_bytes(b"built")
    assert cds.prune(new) == [old]
    assert sorted(p.name for p in new.parent.iterdir()) == sorted([new.name, other.name])


def test_a_cluster_driver_gets_no_archive(tmp_path):
    settings = settings_with(tmp_path, APPAREL_SPARK_MASTER="spark://127.0.0.1:7077")
    jars = ["/cache/a.jar"]
    cds.archive_path(settings, jars).write_bytes(b"built")
    assert "SharedArchiveFile" not in session_conf(settings, jars)["spark.driver.extraJavaOptions"]


def test_the_tests_session_started_from_the_archive_of_its_class_path(spark):
    settings = load_settings(env="ci")
    path = cds.archive_path(settings, jars_for(settings, log=lambda m: None))
    assert path.exists(), f"scripts/test.sh builds {path} before the tests (`apparel --env ci cds`)"
    args = list(spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    assert f"-XX:SharedArchiveFile={path}" in args
    # and it mapped the archive (a JVM that rejects one, another Java or a changed jar, maps none of it)
    pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
    assert str(path) in Path(f"/proc/{pid}/maps").read_text()
