"""One writer of silver and gold at a time, when batch runs and the stream share the lakehouse.

With change data capture on, the stream applies its micro-batches to silver and ``gold.dm_sales_live`` while a
scheduled batch run may build silver and gold: two writers would race on the same MERGEs (Delta would fail one
with a concurrent-modification error, and on ``s3a://`` Delta's S3 log store allows only one writer per
table). So both take a PostgreSQL advisory lock on the store database (which change data capture requires),
named after the lakehouse: the second waits for the first. The lock is held by a session of its own and is
re-entrant within a process (the stream's silver step holds it while it also refreshes the live mart). A
crashed holder's session ends and PostgreSQL frees its lock. Without change data capture nothing is locked.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_local = threading.RLock()
_held: dict[str, list] = {}   # lakehouse -> [connection, depth]


def lock_key(lakehouse: str) -> str:
    return f"apparel:{lakehouse}"


@contextmanager
def lakehouse_lock(settings, log=print, what: str = "run") -> Iterator[None]:
    """Hold the lakehouse's writer lock for the block (no-op unless ``cdc.enabled``)."""
    if not settings.cdc.enabled:
        yield
        return
    import psycopg

    key = lock_key(settings.lakehouse)
    with _local:
        if key in _held:
            _held[key][1] += 1
            try:
                yield
            finally:
                _held[key][1] -= 1
            return
        conn = psycopg.connect(settings.store_db, autocommit=True, connect_timeout=10)
        try:
            got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()[0]
            if not got:
                log(f"[lock] waiting for the other writer of {settings.lakehouse} to finish ({what})")
                conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
            _held[key] = [conn, 1]
            try:
                yield
            finally:
                del _held[key]
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
        finally:
            conn.close()
