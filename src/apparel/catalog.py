"""The table catalog: logical names (``bronze.orders``, ``ops.ingest_runs``) mapped to Delta locations under
the lakehouse root, plus the small amount of Delta I/O every job shares.

Layers are folders: ``<lakehouse>/<layer>/<table>``. Writes are single Delta commits (atomic overwrite
or append), so a reader never sees a half-written table.
"""

from __future__ import annotations

from dataclasses import dataclass

from apparel.config import Settings
from apparel.schemas import SOURCES

LAYERS = ("bronze", "silver", "gold", "quarantine", "ops")


@dataclass(frozen=True)
class TableInfo:
    name: str       # "<layer>.<table>"
    grain: str      # one line: what one row is

    @property
    def layer(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]


TABLES: dict[str, TableInfo] = {}


def register(name: str, grain: str) -> TableInfo:
    info = TableInfo(name, grain)
    if info.layer not in LAYERS:
        raise ValueError(f"unknown layer in {name!r}")
    TABLES[name] = info
    return info


for _src in SOURCES.values():
    register(f"bronze.{_src.name}", f"one row per {_src.name} source row as extracted, per batch"
             if _src.incremental else f"one row per {_src.name} source row in the latest snapshot")
register("ops.ingest_runs", "one row per bronze table per ingest batch")


class Catalog:
    def __init__(self, settings: Settings):
        self.root = settings.lakehouse

    def path(self, name: str) -> str:
        if name not in TABLES:
            raise KeyError(f"unknown table {name!r}; known: {', '.join(sorted(TABLES))}")
        info = TABLES[name]
        return f"{self.root}/{info.layer}/{info.table}"

    def exists(self, spark, name: str) -> bool:
        from delta.tables import DeltaTable

        return DeltaTable.isDeltaTable(spark, self.path(name))

    def read(self, spark, name: str):
        return spark.read.format("delta").load(self.path(name))

    def overwrite(self, df, name: str, partition_by: list[str] | None = None) -> dict:
        """Replace the table's content in one Delta commit; returns the commit's operation metrics."""
        writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        writer.save(self.path(name))
        return self.last_commit(df.sparkSession, name)

    def append(self, df, name: str) -> dict:
        df.write.format("delta").mode("append").save(self.path(name))
        return self.last_commit(df.sparkSession, name)

    def last_commit(self, spark, name: str) -> dict:
        """``{"version": int, "operation": str, "metrics": {...}, "timestamp": datetime}`` of the newest commit."""
        from delta.tables import DeltaTable

        row = DeltaTable.forPath(spark, self.path(name)).history(1).collect()[0]
        return {
            "version": int(row["version"]),
            "operation": row["operation"],
            "metrics": dict(row["operationMetrics"] or {}),
            "timestamp": row["timestamp"],
        }
