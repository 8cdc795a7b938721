"""Trino over the lakehouse: the ``lakehouse`` catalog (Delta Lake connector, file metastore on the object
store) reads the Delta tables that Spark writes. Trino never writes them.

- :func:`register_tables` makes every Delta table of an ``s3a://`` lakehouse known to Trino, as
  ``lakehouse.<layer>.<table>``: new tables are registered with ``system.register_table``; a table already
  registered at the same location is left alone (Trino reads its newest Delta version at each query, so a
  rewrite is visible at once, and never half of it). Idempotent.
- :func:`run_sql` runs one statement for ``apparel sql``.
"""

from __future__ import annotations

import re
from urllib.parse import urlparse

from apparel.catalog import LAYERS, TABLES, Catalog
from apparel.config import Settings
from apparel.errors import ConfigError, QueryError, SetupError
from apparel.objectstore import S3Location, delta_tables


def connect(settings: Settings, timeout: float = 300):
    import trino

    url = str(settings.trino.get("url") or "")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"APPAREL_TRINO_URL must be http(s)://host:port, not {url!r}")
    return trino.dbapi.connect(host=parsed.hostname, port=parsed.port or (443 if parsed.scheme == "https" else 80),
                               http_scheme=parsed.scheme, user=str(settings.trino.get("user") or "apparel"),
                               catalog=str(settings.trino.get("catalog") or "lakehouse"), request_timeout=timeout)


def execute(settings: Settings, sql: str, conn=None) -> tuple[list[str], list[tuple]]:
    """Run one statement; returns (column names, rows). An unreachable server is a one-line error."""
    import requests
    from trino.exceptions import TrinoConnectionError

    conn = conn or connect(settings)
    cur = conn.cursor()
    try:
        cur.execute(sql)
        rows = cur.fetchall()
    except (requests.exceptions.ConnectionError, TrinoConnectionError) as exc:
        raise SetupError(f"Trino is not reachable at {settings.trino['url']}: start it with `make services-up`, "
                         "or set APPAREL_TRINO_URL") from exc
    return [d[0] for d in (cur.description or [])], [tuple(r) for r in rows]


def run_sql(settings: Settings, sql: str, limit: int = 1000):
    """``apparel sql``: (pandas DataFrame of at most ``limit`` rows, whether rows were cut off). A query Trino
    rejects is a one-line error with Trino's message."""
    import pandas as pd
    from trino.exceptions import TrinoQueryError

    if not settings.trino.get("url"):
        raise ConfigError("Trino is switched off (APPAREL_TRINO_URL=off)")
    try:
        columns, rows = execute(settings, sql)
    except TrinoQueryError as exc:
        raise QueryError(f"Trino {exc.error_name}: {exc.message}") from exc
    return pd.DataFrame(rows[:limit], columns=columns), len(rows) > limit


def reachable(settings: Settings) -> bool:
    import requests

    url = str(settings.trino.get("url") or "")
    if not url:
        return False
    try:
        info = requests.get(url.rstrip("/") + "/v1/info", timeout=5).json()
        return not info.get("starting", True)
    except (requests.RequestException, ValueError):
        return False


def trino_location(uri: str) -> str:
    """Trino's native S3 file system addresses objects as ``s3://``."""
    return S3Location.parse(uri).uri("s3")


def registered_tables(settings: Settings, conn=None) -> set[tuple[str, str]]:
    """(schema, table) of every table Trino knows in the lakehouse's layers."""
    layers = ", ".join(repr(x) for x in LAYERS)
    return {(r[0], r[1]) for r in execute(
        settings, f"SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema IN ({layers})",
        conn)[1]}


def _registered_location(settings: Settings, conn, schema: str, table: str) -> str | None:
    from trino.exceptions import TrinoQueryError

    try:
        _, rows = execute(settings, f'SHOW CREATE TABLE "{schema}"."{table}"', conn)
    except TrinoQueryError:  # registered, but its files are gone: treated as stale
        return None
    found = re.search(r"location = '([^']*)'", rows[0][0])
    return found.group(1) if found else None


def register_tables(settings: Settings, log=print) -> dict[str, str]:
    """Register the lakehouse's Delta tables in Trino; returns {table: "registered" | "re-pointed"} for the
    ones that changed."""
    if not settings.on_s3:
        raise ConfigError(f"Trino reads an object store: the lakehouse {settings.lakehouse} is not an s3a:// URI")
    catalog = Catalog(settings)
    names = sorted(TABLES)
    present = delta_tables(settings, names, {n: catalog.path(n) for n in names})
    conn = connect(settings)
    root = S3Location.parse(settings.lakehouse)
    schemas = {r[0] for r in execute(settings, "SHOW SCHEMAS", conn)[1]}
    for layer in LAYERS:
        if layer not in schemas:
            location = trino_location(root.child(layer).uri())
            execute(settings, f"CREATE SCHEMA IF NOT EXISTS \"{layer}\" WITH (location = '{location}')", conn)
    existing = registered_tables(settings, conn)
    changed = {}
    for name in present:
        info = TABLES[name]
        location = trino_location(catalog.path(name))
        if (info.layer, info.table) in existing:
            if _registered_location(settings, conn, info.layer, info.table) == location:
                continue
            execute(settings, f"CALL system.unregister_table(schema_name => '{info.layer}', "
                              f"table_name => '{info.table}')", conn)
            changed[name] = "re-pointed"
        else:
            changed[name] = "registered"
        execute(settings, f"CALL system.register_table(schema_name => '{info.layer}', table_name => '{info.table}', "
                          f"table_location => '{location}')", conn)
    if changed:
        log(f"[trino] {len(changed)} table(s) registered in {settings.trino.get('catalog', 'lakehouse')}: "
            + ", ".join(f"{n}{'' if v == 'registered' else ' (' + v + ')'}" for n, v in changed.items()))
    else:
        log(f"[trino] all {len(present)} tables already registered")
    return changed


def unregister_under(settings: Settings, uri: str) -> list[str]:
    """Forget (never delete) the registered tables located under ``uri``; returns their names. Used to leave
    Trino's catalog as it was after a throw-away lakehouse (tests, benchmarks)."""
    prefix = trino_location(uri).rstrip("/") + "/"
    conn = connect(settings)
    gone = []
    for schema, table in sorted(registered_tables(settings, conn)):
        location = _registered_location(settings, conn, schema, table)
        if location and location.startswith(prefix):
            execute(settings, f"CALL system.unregister_table(schema_name => '{schema}', table_name => '{table}')", conn)
            gone.append(f"{schema}.{table}")
    return gone
