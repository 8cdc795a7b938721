"""The one Spark session builder: Delta configured, jars from the cache, settings from ``conf/``.

Every entry point (the CLI, the spark-submit jobs, the tests) builds its session here, so local runs,
Airflow and CI share one configuration.
"""

from __future__ import annotations

import atexit
import os
import sys

from apparel.config import PROJECT_ROOT, Settings, resolve_path
from apparel.jars import jars_for

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


# settings that only take effect when the driver JVM starts
LAUNCH_SETTINGS = {"spark.master", "spark.jars", "spark.driver.memory", "spark.driver.extraJavaOptions",
                   "spark.driver.extraClassPath", "spark.executor.extraJavaOptions", "spark.app.name"}


def is_local(master: str) -> bool:
    return master.strip().startswith("local")


def jvm_class(spark, name: str):
    """The JVM class ``name`` (its full name) for calls through Py4J, looked up once per driver JVM.

    ``spark._jvm.org.apache.hadoop.fs.Path`` asks the JVM for ``org``, then ``org.apache``, and so on, and each
    name that is not a class is searched for in every jar of the class path (hundreds) before Py4J calls it a
    package: a pipeline run spent about a second of the driver's time on those searches (``Catalog.version`` alone
    looked up ``DeltaLog`` and ``scala.Option`` about a hundred times). The full name is found in one lookup, and the
    class is kept on the session's Py4J view of the JVM (a new JVM has a new view)."""
    jvm = spark.sparkContext._jvm
    found = jvm.__dict__.setdefault("_apparel_classes", {})  # __dict__: an unknown attribute would ask the JVM
    if name not in found:
        found[name] = getattr(jvm, name)
    return found[name]


def local_frame(spark, rows, schema):
    """``spark.createDataFrame(rows, schema)`` for a few rows the driver holds (tuples, lists, dicts or Rows;
    ``schema`` a ``StructType`` or DDL), kept in the query plan as a ``LocalRelation``: no Spark job computes it and
    no Python worker reads it. PySpark's own path for a list ships the rows to the JVM as an RDD of pickles, read
    back by a Python worker per partition each time a query scans them (in a warm pipeline run, 91 of 500 tasks).
    The rows go through PySpark's own checks and conversion (``StructType.toInternal``: the same instants for naive
    timestamps), then to the JVM as Arrow, which keeps a small table in the plan
    (``spark.sql.execution.arrow.localRelationThreshold``). Columns are flat values, or arrays and maps of flat
    values (the run records' lists of tables and months, the counts by reason); a struct, or a collection of
    collections, takes PySpark's path."""
    import pyarrow as pa
    from pyspark.sql import types as T
    from pyspark.sql.pandas.types import to_arrow_type

    struct = schema if isinstance(schema, T.StructType) else T._parse_datatype_string(schema)
    flat = {T.LongType: pa.int64(), T.IntegerType: pa.int32(), T.ShortType: pa.int16(), T.ByteType: pa.int8(),
            T.StringType: pa.string(), T.BooleanType: pa.bool_(), T.DoubleType: pa.float64(),
            T.FloatType: pa.float32(), T.BinaryType: pa.binary()}
    # dates and times as toInternal leaves them (days, microseconds since the epoch), then cast to their type
    temporal = {T.DateType: (pa.int32(), pa.date32()), T.TimestampType: (pa.int64(), pa.timestamp("us", tz="UTC")),
                T.TimestampNTZType: (pa.int64(), pa.timestamp("us"))}

    def scalar(dt) -> tuple | None:
        """(the Arrow type of toInternal's values, the column's Arrow type), or None: not a flat value."""
        if type(dt) in flat:
            return flat[type(dt)], flat[type(dt)]
        if isinstance(dt, T.DecimalType):
            return (to_arrow_type(dt),) * 2
        return temporal.get(type(dt))

    def arrow(dt) -> tuple | None:
        """The same for a column: a flat value, or an array or a map of flat values."""
        if isinstance(dt, T.ArrayType) and (element := scalar(dt.elementType)):
            return pa.list_(element[0]), pa.list_(element[1])
        if isinstance(dt, T.MapType) and (key := scalar(dt.keyType)) and (value := scalar(dt.valueType)):
            return pa.map_(key[0], value[0]), pa.map_(key[1], value[1])
        return scalar(dt)

    types = [arrow(f.dataType) for f in struct.fields] if isinstance(struct, T.StructType) else [None]
    if None in types:
        return spark.createDataFrame(rows, schema)
    verify = T._make_type_verifier(struct)
    internal = []
    for row in rows:
        verify(row)
        internal.append(struct.toInternal(row))

    def column(i: int, field) -> "pa.Array":
        values = [r[i] for r in internal]
        if isinstance(field.dataType, T.MapType):  # a dict each (toInternal's), as Arrow's (key, value) pairs
            values = [None if v is None else list(v.items()) for v in values]
        built, final = types[i]
        array = pa.array(values, built)
        return array if built == final else array.cast(final)

    table = pa.Table.from_arrays([column(i, f) for i, f in enumerate(struct.fields)],
                                 names=[f.name for f in struct.fields])
    return spark.createDataFrame(table, struct)


def pin(df):
    """``df``'s rows computed once and kept for the rest of the job (a source read once, then counted and written
    as the same rows), for ``df.transform(pin)``. In local mode a ``localCheckpoint``: its blocks live in the one
    JVM, lost only with the driver and the run with it. On a cluster an executor can die while the job runs, and
    its local checkpoint blocks with it (the job then fails); there the rows are checkpointed to
    ``spark.checkpoint_dir`` (:func:`checkpoint_dir`), shared storage that outlives any executor."""
    if is_local(df.sparkSession.sparkContext.master):
        return df.localCheckpoint()
    return df.checkpoint()


def checkpoint_dir(settings: Settings) -> str:
    """Where a cluster's checkpoints go: ``spark.checkpoint_dir``, else ``<lakehouse>/_spark_checkpoints`` (what
    every executor reaches: the object store, or the local disk of a cluster on this machine). Spark deletes each
    checkpoint once the job no longer references it (``spark.cleaner.referenceTracking.cleanCheckpoints``)."""
    folder = str(settings.spark.get("checkpoint_dir") or "").strip()
    return folder if "://" in folder else resolve_path(folder) if folder else f"{settings.lakehouse}/_spark_checkpoints"


def _reliable_checkpoints(spark, settings: Settings) -> None:
    """On a cluster: checkpoints to :func:`checkpoint_dir` (Spark makes a folder per application there), deleted
    when the process exits (Spark's cleaner deletes a checkpoint only once the driver collected its references)."""
    sc = spark.sparkContext
    if not is_local(sc.master) and not sc.getCheckpointDir():
        sc.setCheckpointDir(checkpoint_dir(settings))
        atexit.register(_drop_checkpoints, spark)


def _drop_checkpoints(spark) -> None:
    try:
        path = jvm_class(spark, "org.apache.hadoop.fs.Path")(spark.sparkContext.getCheckpointDir())
        path.getFileSystem(spark._jsc.hadoopConfiguration()).delete(path, True)
    except Exception:  # noqa: BLE001 - at exit, with the JVM gone already, there is nothing left to delete with
        pass


def session_conf(settings: Settings, jars: list[str], cds: str | None = None) -> dict[str, str]:
    """The session's settings. In local mode the jars go on the one JVM's class path: ``spark.jars`` would have
    the executor copy each of them (the 686 MB AWS SDK bundle too) into a temporary folder per session, and the
    driver starts from the class archive of that class path when it was built (:mod:`apparel.cds`; ``cds``:
    other class-sharing flags instead)."""
    from apparel import cds as class_sharing

    sp = settings.spark
    master = str(sp["master"])
    conf = {
        "spark.master": master,
        "spark.app.name": str(sp.get("app_name", "django-apparel")),
        "spark.driver.memory": str(sp.get("driver_memory", "2g")),
        "spark.sql.shuffle.partitions": str(sp.get("shuffle_partitions", 4)),
        **({"spark.driver.extraClassPath": os.pathsep.join(jars)} if is_local(master) else
           {"spark.jars": ",".join(jars)}),
        **DELTA_CONF,
    }
    if not is_local(master):  # what each executor asks a cluster's worker for (spark_cluster.worker_* offer it)
        conf["spark.executor.memory"] = str(sp.get("executor_memory", "2g"))
        conf["spark.executor.cores"] = str(sp.get("executor_cores", 1))
        conf["spark.cleaner.referenceTracking.cleanCheckpoints"] = "true"  # pin()'s checkpoints, once unused
    conf.update({k: str(v) for k, v in (sp.get("conf") or {}).items()})
    # spark.executor_java_options (APPAREL_SPARK_EXECUTOR_JAVA_OPTIONS): JVM flags added to each executor's, on a
    # cluster (in local mode the driver's JVM runs the tasks)
    executor_opts = str(sp.get("executor_java_options") or "").strip()
    if executor_opts and not is_local(master):
        conf["spark.executor.extraJavaOptions"] = \
            f"{conf.get('spark.executor.extraJavaOptions', '')} {executor_opts}".strip()
    # spark.java_options (APPAREL_SPARK_JAVA_OPTIONS): JVM flags added to the driver's (the one JVM in local mode)
    extra_opts = str(sp.get("java_options") or "").strip()
    if cds is None and is_local(master):
        cds = class_sharing.java_options(settings, jars)
    extra_opts = f"{extra_opts} {cds or ''}".strip()
    if extra_opts:
        conf["spark.driver.extraJavaOptions"] = f"{conf.get('spark.driver.extraJavaOptions', '')} {extra_opts}".strip()
    opts = conf.get("spark.driver.extraJavaOptions", "")
    if "-Dlog4j2.configurationFile=conf/" in opts:  # the project's log4j2.properties, by absolute path
        conf["spark.driver.extraJavaOptions"] = opts.replace(
            "-Dlog4j2.configurationFile=conf/", f"-Dlog4j2.configurationFile=file:{PROJECT_ROOT}/conf/")
    if "spark.sql.warehouse.dir" in conf:  # relative to the project root, not the working directory
        conf["spark.sql.warehouse.dir"] = resolve_path(conf["spark.sql.warehouse.dir"])
    if settings.on_s3:
        from apparel.objectstore import s3a_conf

        conf.update({f"spark.hadoop.{k}": v for k, v in s3a_conf(settings).items()})
    return conf


def apply_s3a(spark, settings: Settings) -> None:
    """Point a running session's S3A at ``settings``' store (a session outlives one lakehouse in tests)."""
    if settings.on_s3:
        from apparel.objectstore import s3a_conf

        hadoop = spark.sparkContext._jsc.hadoopConfiguration()
        for key, value in s3a_conf(settings).items():
            hadoop.set(key, value)


def get_spark(settings: Settings, app_name: str | None = None, extra: dict[str, str] | None = None,
              cds: str | None = None):
    """Return the active session, or build one from ``settings`` (and the settings ``extra``; ``cds``: the JVM's
    class-sharing flags instead of :func:`apparel.cds.java_options`')."""
    from pyspark.sql import SparkSession

    if settings.on_s3:
        # before the JVM: a wrong endpoint or key fails in a second, naming the endpoint, with nothing written
        from apparel.objectstore import ensure_buckets

        ensure_buckets(settings, log=lambda m: print(m, file=sys.stderr))
    active = SparkSession.getActiveSession()
    if active is not None:
        apply_s3a(active, settings)
        _reliable_checkpoints(active, settings)
        return active
    # the workers must run the same Python as the driver (the project's venv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    jars = [] if os.environ.get("PYSPARK_GATEWAY_PORT") else jars_for(
        settings, log=lambda m: print(f"[setup] {m}", file=sys.stderr))
    conf = {**session_conf(settings, jars, cds=cds), **(extra or {})}
    if os.environ.get("PYSPARK_GATEWAY_PORT"):
        # launched by spark-submit: the JVM is up, so its master, jars and JVM options came from the command
        # line (--master, --jars or --driver-class-path, --driver-memory); setting them here would override or
        # come too late
        conf = {k: v for k, v in conf.items() if k not in LAUNCH_SETTINGS}
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    if app_name:
        builder = builder.appName(app_name)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(str(settings.spark.get("log_level", "ERROR")))
    _reliable_checkpoints(spark, settings)
    return spark
