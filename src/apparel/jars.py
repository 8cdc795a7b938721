"""JVM jars from Maven Central, resolved once and cached outside the repository.

The Maven coordinates in ``conf/base.yaml`` (``jars.packages``, plus ``jars.s3_packages`` when the lakehouse
is on S3) are resolved with the Ivy jar that pyspark bundles, into
``<jars.cache_dir>/<hash of the coordinates and the pyspark version>/``. A later run reads the cached manifest
and downloads nothing.

pyspark already ships Spark, Scala, Hadoop's client jars, Parquet, Jackson, log4j, ... and the Delta pom drags
in second copies of them (delta-io/delta#7415). So a dependency from those organisations is resolved only
when it is named in the list (``org.apache.hadoop:hadoop-aws``, which pyspark does not ship), never as a
transitive one; and any resolved jar whose artifact pyspark already ships is dropped.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

from apparel.errors import SetupError

# Provided by pyspark itself: never resolved as a transitive dependency.
PROVIDED_ORGS = ("org.apache.spark", "org.scala-lang", "org.apache.hadoop", "org.apache.parquet")
_VERSION_SUFFIX = re.compile(r"-\d[^-]*(-[A-Za-z0-9]+)?$")


def packages_for(settings) -> list[str]:
    """The coordinates a session needs: ``jars.packages``, plus ``jars.s3_packages`` (S3A) when the lakehouse is
    on an object store or ``jars.s3_on_classpath`` is true."""
    jars = settings.jars
    with_s3 = settings.on_s3 or str(jars.get("s3_on_classpath", False)).lower() == "true"
    return list(jars["packages"]) + (list(jars.get("s3_packages") or []) if with_s3 else [])


def stream_packages_for(settings) -> list[str]:
    """Structured Streaming's Kafka source (``jars.stream_packages``), when change data capture is on or
    ``jars.stream_on_classpath`` is true; else none."""
    jars = settings.jars
    wanted = settings.cdc.enabled or str(jars.get("stream_on_classpath", False)).lower() == "true"
    return list(jars.get("stream_packages") or []) if wanted else []


def jars_for(settings, log=print) -> list[str]:
    """Absolute paths of the jars ``settings`` need (:func:`packages_for`, then :func:`stream_packages_for`),
    resolved into the cache on first use. The streaming jars are a cache entry of their own, so switching them
    on does not copy the S3 bundle into a new entry."""
    found = resolve(packages_for(settings), settings.jars["cache_dir"], log=log)
    stream = stream_packages_for(settings)
    if stream:
        have = {artifact_name(j) for j in found}
        found += [j for j in resolve(stream, settings.jars["cache_dir"], log=log) if artifact_name(j) not in have]
    return found


def pyspark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise SetupError("Java not found: install a JDK 17+ or set JAVA_HOME")
    return found


def artifact_name(jar: str) -> str:
    """``jackson-core-2.13.5.jar`` -> ``jackson-core``."""
    return _VERSION_SUFFIX.sub("", Path(jar).stem)


def _ivy_xml(packages: list[str], standalone: bool = False) -> str:
    deps = []
    for coord in packages:
        parts = coord.split(":")
        if len(parts) != 3:
            raise SetupError(f"jar coordinate {coord!r} is not group:artifact:version")
        org, name, rev = (quoteattr(p) for p in parts)
        # an exclude inside a dependency also matches the dependency itself, so a named coordinate from a
        # provided organisation (hadoop-aws) keeps its own organisation; its Hadoop dependencies are all
        # `provided` scope, which the default configuration does not resolve
        excludes = "" if standalone else "".join(f'<exclude org="{o}"/>' for o in PROVIDED_ORGS if o != parts[0])
        deps.append(f'    <dependency org={org} name={name} rev={rev} conf="default->default">{excludes}</dependency>')
    return (
        '<ivy-module version="2.0">\n'
        '  <info organisation="apparel" module="lakehouse-jars"/>\n'
        '  <configurations><conf name="default"/></configurations>\n'
        "  <dependencies>\n" + "\n".join(deps) + "\n  </dependencies>\n</ivy-module>\n"
    )


def cache_key(packages: list[str], standalone: bool = False) -> str:
    import pyspark

    text = "\n".join(sorted(packages)) + f"\npyspark={pyspark.__version__}" + ("\nstandalone" if standalone else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(packages: list[str], cache_dir: str | Path, log=print, standalone: bool = False) -> list[str]:
    """Return absolute paths of the jars for ``packages``, resolving them on the first call. ``standalone``: the
    classpath of a JVM of its own (the Kafka broker), every transitive jar kept, nothing left to pyspark."""
    cache_root = Path(cache_dir).expanduser()
    target = cache_root / cache_key(packages, standalone)
    manifest = target / "manifest.txt"
    if manifest.exists():
        jars = [str(target / line) for line in manifest.read_text().split() if line]
        if all(Path(j).exists() for j in jars):
            return jars
    ivy_jars = sorted(pyspark_jars_dir().glob("ivy-*.jar"))
    if not ivy_jars:
        raise SetupError(f"no Ivy jar in {pyspark_jars_dir()}: is pyspark installed?")
    log(f"resolving {len(packages)} Maven package(s) into {target} (first run only)")
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root, prefix=".resolve-") as tmp:
        ivy_file = Path(tmp) / "ivy.xml"
        ivy_file.write_text(_ivy_xml(packages, standalone))
        retrieve = Path(tmp) / "jars"
        cmd = [java_executable(), "-jar", str(ivy_jars[0]), "-ivy", str(ivy_file),
               "-cache", str(cache_root / "ivy-cache"), "-confs", "default",
               "-retrieve", f"{retrieve}/[artifact]-[revision](-[classifier]).[ext]"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not retrieve.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise SetupError(f"could not resolve jars {', '.join(packages)} from Maven Central:\n{tail}")
        provided = set() if standalone else {artifact_name(j.name) for j in pyspark_jars_dir().glob("*.jar")}
        keep = sorted(j.name for j in retrieve.glob("*.jar") if artifact_name(j.name) not in provided)
        (retrieve / "manifest.txt").write_text("\n".join(keep) + "\n")
        for j in retrieve.glob("*.jar"):
            if j.name not in keep:
                j.unlink()
        if target.exists():
            shutil.rmtree(target)
        retrieve.rename(target)
    log(f"cached {len(keep)} jar(s): {', '.join(keep)}")
    return [str(target / name) for name in keep]
