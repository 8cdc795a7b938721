"""The store database: SQLite by default (Django's default, embedded), PostgreSQL for a real server.

``APPAREL_STORE_DB`` selects it: ``sqlite:///abs/path.db`` or ``postgresql://user:password@host:port/db``.
The schema mirrors the source files with proper types. It indexes the id columns but enforces neither
uniqueness nor foreign keys: the handed-over data reuses ids, and deciding what is valid is the
pipeline's data contract, not the loader's.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import unquote, urlparse

from apparel.errors import ConfigError, SourceError
from apparel.schemas import SourceTable

_SQL_TYPES = {
    "sqlite": {"bigint": "INTEGER", "text": "TEXT", "timestamp": "TIMESTAMP"},
    "postgresql": {"bigint": "BIGINT", "text": "TEXT", "timestamp": "TIMESTAMP"},
}
TIMESTAMP_TEXT = "%Y-%m-%d %H:%M:%S.%f"


def _timestamp_text(value: datetime) -> str:
    """SQLite has no timestamp type: store ISO text with milliseconds, as the source CSV writes them."""
    return value.strftime(TIMESTAMP_TEXT)[:-3]


@dataclass(frozen=True)
class StoreDB:
    url: str

    @property
    def kind(self) -> str:
        if self.url.startswith("sqlite:///"):
            return "sqlite"
        if self.url.startswith(("postgresql://", "postgres://")):
            return "postgresql"
        raise ConfigError(f"APPAREL_STORE_DB must be sqlite:///path or postgresql://..., got {self.redacted}")

    @property
    def redacted(self) -> str:
        """The URL without its password, for logs and errors."""
        parsed = urlparse(self.url)
        if parsed.password:
            return self.url.replace(f":{parsed.password}@", ":***@")
        return self.url

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url[len("sqlite:///"):])

    @contextmanager
    def connect(self) -> Iterator[Any]:
        """A DB-API connection that commits on success and rolls back on error."""
        if self.kind == "sqlite":
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.sqlite_path)
        else:
            import psycopg

            try:
                conn = psycopg.connect(self.url, connect_timeout=10)
            except psycopg.OperationalError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SourceError(f"cannot connect to the store database {self.redacted}: {first}") from exc
        try:
            yield conn
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    # --- schema -------------------------------------------------------------------------------------

    def ddl(self, table: SourceTable) -> list[str]:
        types = _SQL_TYPES[self.kind]
        cols = ", ".join(f"{c.name} {types[c.type]}" for c in table.columns)
        stmts = [f"CREATE TABLE IF NOT EXISTS {table.name} ({cols})"]
        for col in table.column_names:
            if col.endswith("_id"):
                stmts.append(f"CREATE INDEX IF NOT EXISTS ix_{table.name}_{col} ON {table.name} ({col})")
        return stmts

    def create_schema(self, tables: Iterable[SourceTable]) -> None:
        with self.connect() as conn:
            cur = conn.cursor()
            for table in tables:
                for stmt in self.ddl(table):
                    cur.execute(stmt)

    # --- rows ---------------------------------------------------------------------------------------

    def _prepare(self, table: SourceTable, rows: Iterable[Sequence[Any]]) -> Iterator[tuple]:
        ts_idx = [i for i, c in enumerate(table.columns) if c.type == "timestamp"]
        for row in rows:
            if self.kind == "sqlite" and ts_idx:
                row = list(row)
                for i in ts_idx:
                    if row[i] is not None:
                        row[i] = _timestamp_text(row[i])
            yield tuple(row)

    def replace_rows(self, table: SourceTable, rows: Iterable[Sequence[Any]]) -> int:
        """Replace the table's content with ``rows`` in one transaction (idempotent seeding)."""
        with self.connect() as conn:
            cur = conn.cursor()
            for stmt in self.ddl(table):
                cur.execute(stmt)
            cur.execute(f"DELETE FROM {table.name}")
            return self._insert(cur, table, rows)

    def insert_rows(self, table: SourceTable, rows: Iterable[Sequence[Any]]) -> int:
        """Append rows (new orders arriving in the store)."""
        with self.connect() as conn:
            return self._insert(conn.cursor(), table, rows)

    def _insert(self, cur: Any, table: SourceTable, rows: Iterable[Sequence[Any]]) -> int:
        cols = ", ".join(table.column_names)
        n = 0
        if self.kind == "postgresql":
            with cur.copy(f"COPY {table.name} ({cols}) FROM STDIN") as copy:
                for row in self._prepare(table, rows):
                    copy.write_row(row)
                    n += 1
            return n
        marks = ", ".join("?" for _ in table.columns)
        batch: list[tuple] = []
        for row in self._prepare(table, rows):
            batch.append(row)
            if len(batch) >= 5000:
                cur.executemany(f"INSERT INTO {table.name} ({cols}) VALUES ({marks})", batch)
                n += len(batch)
                batch.clear()
        if batch:
            cur.executemany(f"INSERT INTO {table.name} ({cols}) VALUES ({marks})", batch)
            n += len(batch)
        return n

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run a read query; ``?`` placeholders are translated for PostgreSQL."""
        if self.kind == "postgresql":
            sql = sql.replace("?", "%s")
        with self.connect() as conn:
            cur = conn.cursor()
            try:
                cur.execute(sql, tuple(params))
            except Exception as exc:
                if type(exc).__name__ != "InsufficientPrivilege":
                    raise
                raise SourceError(f"the store database {self.redacted} refused role {self.user}: "
                                  f"{str(exc).strip().splitlines()[0]} (`apparel seed` grants the extraction's "
                                  "role SELECT on the store's tables; see README \"Least privilege\")") from exc
            return list(cur.fetchall())

    def table_exists(self, name: str) -> bool:
        if self.kind == "sqlite":
            if not self.sqlite_path.exists():
                return False
            sql = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
        else:
            sql = ("SELECT count(*) FROM information_schema.tables "
                   "WHERE table_schema = current_schema() AND table_name = ?")
        return self.query(sql, (name,))[0][0] > 0

    @property
    def user(self) -> str | None:
        """The role the URL logs in as (PostgreSQL), None for SQLite or when the URL names none."""
        return None if self.kind == "sqlite" else (unquote(urlparse(self.url).username or "") or None)

    def grant_read(self, reader: "StoreDB", tables: Iterable[SourceTable]) -> str | None:
        """Give the extraction's role (``reader``'s, when it is another role on the same PostgreSQL database)
        SELECT on ``tables``, and nothing else. Returns the role granted to, or None (SQLite, or one role)."""
        if self.kind != "postgresql" or reader.kind != "postgresql" or reader.user in (None, self.user):
            return None
        mine, theirs = urlparse(self.url), urlparse(reader.url)
        if (mine.hostname, mine.port, mine.path) != (theirs.hostname, theirs.port, theirs.path):
            raise ConfigError(f"APPAREL_STORE_READ_DB ({reader.redacted}) is not the database of APPAREL_STORE_DB "
                              f"({self.redacted}): the extraction must read the store that is seeded")
        from psycopg import sql

        with self.connect() as conn:
            for table in tables:
                conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(sql.Identifier(table.name),
                                                                        sql.Identifier(reader.user)))
        return reader.user

    def count(self, name: str) -> int:
        return self.query(f"SELECT count(*) FROM {name}")[0][0]

    # --- Spark JDBC ---------------------------------------------------------------------------------

    def jdbc_options(self) -> dict[str, str]:
        if self.kind == "sqlite":
            if not self.sqlite_path.exists():
                raise SourceError(f"the store database {self.sqlite_path} does not exist: run `apparel seed` first")
            return {"url": f"jdbc:sqlite:{self.sqlite_path}", "driver": "org.sqlite.JDBC"}
        parsed = urlparse(self.url)
        opts = {
            "url": f"jdbc:postgresql://{parsed.hostname}:{parsed.port or 5432}{parsed.path}",
            "driver": "org.postgresql.Driver",
        }
        if parsed.username:
            opts["user"] = unquote(parsed.username)
        if parsed.password:
            opts["password"] = unquote(parsed.password)
        return opts
