"""Debezium change events as Delta rows, and the table image they add up to (pure transforms, no I/O).

``bronze.cdc_<table>``: one row per change event of a store table, as Debezium's PostgreSQL connector sent it
through Kafka (JSON, no schema): ``op`` (``r`` snapshot read, ``c`` insert, ``u`` update, ``d`` delete),
``before`` and ``after`` (the whole row: the tables have REPLICA IDENTITY FULL), the key of each
(``_key_before``/``_key_after``: the table's first key column, top level so Delta can skip files on it), the
WAL position and transaction (``_lsn``, ``_tx_id``), the commit time (``_commit_ts``), whether it came from the
initial snapshot (``_snapshot``), where it was in Kafka (``_topic``, ``_partition``, ``_offset``), the stream
micro-batch that landed it (``_batch_id``) and when (``_ingested_at``). A record that is not a Debezium event
is kept with ``op`` NULL and its text in ``_raw``: nothing is dropped.

**The image.** The rows a table holds after a set of events are a signed multiset: a snapshot read or an insert
adds its ``after`` row, a delete takes its ``before`` row away, an update does both. Grouping by every column
and keeping the rows whose count is positive gives the table's content, exactly, even though the store tables
have no primary key (a duplicated row is two rows, an update of one copy changes one). A negative count means
an event was lost or counted twice: :func:`image_problems` finds those.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from apparel.schemas import SourceTable
from apparel.spark import local_frame

_SPARK = {"bigint": LongType(), "text": StringType(), "timestamp": TimestampType()}
# Debezium's JSON for each column type: timestamps without time zone are MicroTimestamp (microseconds since
# the epoch, the wall clock read as UTC) with time.precision.mode=adaptive
_JSON = {"bigint": LongType(), "text": StringType(), "timestamp": LongType()}
SNAPSHOT_FALSE = "false"


def row_type(table: SourceTable) -> StructType:
    return StructType([StructField(c.name, _SPARK[c.type]) for c in table.columns])


def event_type(table: SourceTable) -> StructType:
    """The schema of ``bronze.cdc_<table>``."""
    row = row_type(table)
    key = _SPARK[table.columns[[c.name for c in table.columns].index(table.key[0])].type]
    return StructType([
        StructField("op", StringType()),
        StructField("before", row),
        StructField("after", row),
        StructField("_key_before", key),
        StructField("_key_after", key),
        StructField("_lsn", LongType()),
        StructField("_tx_id", LongType()),
        StructField("_commit_ts", TimestampType()),
        StructField("_snapshot", BooleanType()),
        StructField("_topic", StringType()),
        StructField("_partition", IntegerType()),
        StructField("_offset", LongType()),
        StructField("_batch_id", StringType()),
        StructField("_ingested_at", TimestampType()),
        StructField("_raw", StringType()),
    ])


def _json_type(table: SourceTable) -> StructType:
    row = StructType([StructField(c.name, _JSON[c.type]) for c in table.columns])
    source = StructType([StructField("lsn", LongType()), StructField("txId", LongType()),
                         StructField("ts_us", LongType()), StructField("snapshot", StringType())])
    return StructType([StructField("before", row), StructField("after", row), StructField("source", source),
                       StructField("op", StringType())])


def _typed_row(v: Column, table: SourceTable) -> Column:
    fields = []
    for c in table.columns:
        raw = v[c.name]
        fields.append((F.timestamp_micros(raw) if c.type == "timestamp" else raw).alias(c.name))
    return F.when(v.isNotNull(), F.struct(*fields))


def parse(records: DataFrame, table: SourceTable, batch_id: str, ingested_at) -> DataFrame:
    """Kafka records (``key``, ``value``, ``topic``, ``partition``, ``offset``) of one table's topic ->
    ``bronze.cdc_<table>`` rows. Records with no value (tombstones) carry no change and are left out; a value
    that is not a Debezium event is kept with ``op`` NULL and its text in ``_raw``."""
    text = F.col("value").cast("string")
    parsed = records.where(F.col("value").isNotNull()).select(
        F.from_json(text, _json_type(table)).alias("e"), text.alias("_text"),
        F.col("topic").alias("_topic"), F.col("partition").alias("_partition"), F.col("offset").alias("_offset"))
    e = F.col("e")
    ok = F.coalesce(e["op"].isin("r", "c", "u", "d"), F.lit(False))  # not JSON: e (or its op) is null
    before, after = _typed_row(e["before"], table), _typed_row(e["after"], table)
    key = table.key[0]
    return parsed.select(
        F.when(ok, e["op"]).alias("op"),
        F.when(ok, before).alias("before"),
        F.when(ok, after).alias("after"),
        F.when(ok, e["before"][key]).alias("_key_before"),
        F.when(ok, e["after"][key]).alias("_key_after"),
        e["source"]["lsn"].alias("_lsn"),
        e["source"]["txId"].alias("_tx_id"),
        F.timestamp_micros(e["source"]["ts_us"]).alias("_commit_ts"),
        (F.coalesce(e["source"]["snapshot"], F.lit(SNAPSHOT_FALSE)) != SNAPSHOT_FALSE).alias("_snapshot"),
        "_topic", "_partition", "_offset",
        F.lit(batch_id).alias("_batch_id"),
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),
        F.when(~ok, F.col("_text")).alias("_raw"),
    )


def signed_rows(events: DataFrame, table: SourceTable) -> DataFrame:
    """Each event as the rows it adds (+1) and takes away (-1), with the micro-batch that landed it."""
    cols = table.column_names
    plus = events.where(F.col("op").isin("r", "c", "u") & F.col("after").isNotNull()).select(
        *[F.col("after")[c].alias(c) for c in cols], F.lit(1).alias("_sign"), "_batch_id")
    minus = events.where(F.col("op").isin("u", "d") & F.col("before").isNotNull()).select(
        *[F.col("before")[c].alias(c) for c in cols], F.lit(-1).alias("_sign"), "_batch_id")
    return plus.unionByName(minus)


def _counted(events: DataFrame, table: SourceTable) -> DataFrame:
    cols = table.column_names
    return signed_rows(events, table).groupBy(*cols).agg(
        F.sum("_sign").alias("_n"),
        # the copy kept by the contract's de-duplication is the earliest batch's, as in the batch path
        F.min(F.when(F.col("_sign") > 0, F.col("_batch_id"))).alias("_batch_id"))


def image(events: DataFrame, table: SourceTable) -> DataFrame:
    """The rows the table holds after ``events``: its columns and ``_batch_id``, one row per copy."""
    counted = _counted(events, table).where("_n > 0")
    return counted.select(*table.column_names, "_batch_id",
                          F.explode(F.array_repeat(F.lit(1), F.col("_n").cast("int"))).alias("_copy")).drop("_copy")


def image_problems(events: DataFrame, table: SourceTable) -> DataFrame:
    """Rows taken away more often than added: an event lost or applied twice."""
    return _counted(events, table).where("_n < 0")


def changed_keys(spark, path: str, since: int, upto: int, key: str = "order_id") -> DataFrame:
    """The keys (column ``key``: the row's key before the change for an update or a delete, after it for a
    snapshot read, an insert or an update) and micro-batches (``_batch_id``) of the events appended to the events
    table at ``path`` after version ``since`` up to ``upto``, from Delta's change data feed."""
    events = (spark.read.format("delta").option("readChangeFeed", "true").option("startingVersion", since + 1)
              .option("endingVersion", upto).load(path).where("_change_type = 'insert'"))
    return events.where(F.col("op").isin("u", "d")).select(F.col("_key_before").alias(key), "_batch_id") \
        .unionByName(events.where(F.col("op").isin("r", "c", "u")).select(F.col("_key_after").alias(key), "_batch_id"))


# up to this many keys are matched as a literal list: a filter Delta can skip files with (each event's file
# carries the range of its keys), and no join; more go through a broadcast semi-join
LITERAL_KEYS = 5000


def in_list(column: str, values) -> Column:
    """``column IN (values)``. Integers go as one SQL expression: PySpark's ``isin`` makes a call to the JVM per
    value, which for a few thousand order ids takes longer than the query."""
    values = sorted(set(values))
    if values and all(type(v) is int for v in values):
        return F.expr(f"`{column}` IN ({', '.join(map(str, values))})")
    return F.col(column).isin(values)


def events_for_keys(events: DataFrame, keys, key: str, with_nulls: bool = False) -> DataFrame:
    """The events whose row before or after has its key in ``keys`` (a DataFrame of one column, ``key``, or a
    list of values); with ``with_nulls`` also those whose key is null (rows with a null key are judged together,
    as in the batch path)."""
    nulls = ((F.col("op").isin("r", "c", "u") & F.col("_key_after").isNull())
             | (F.col("op").isin("u", "d") & F.col("_key_before").isNull()))
    if isinstance(keys, (list, tuple)) and len(keys) <= LITERAL_KEYS:
        hit = in_list("_key_before", keys) | in_list("_key_after", keys)
        return events.where(hit | nulls if with_nulls else hit)
    if isinstance(keys, (list, tuple)):
        schema = StructType([StructField(key, events.schema["_key_after"].dataType)])
        keys = local_frame(events.sparkSession, [(k,) for k in set(keys)], schema)
    k = keys.select(F.col(key).alias("_k")).distinct()
    hit = events.join(F.broadcast(k), events["_key_before"] == k["_k"], "left_semi").unionByName(
        events.join(F.broadcast(k), events["_key_after"] == k["_k"], "left_semi"))
    if with_nulls:
        hit = hit.unionByName(events.where(nulls))
    # an event in both halves (an update keeping its key) must count once
    return hit.dropDuplicates(["_topic", "_partition", "_offset"])
