"""One writer of silver and gold at a time, when batch runs and the stream share the lakehouse.

With change data capture on, the stream applies its micro-batches to silver and ``gold.dm_sales_live`` while a
scheduled batch run may build silver and gold: two writers would race on the same MERGEs (Delta would fail one
with a concurrent-modification error, and on ``s3a://`` Delta's S3 log store allows only one writer per
table). So both take a PostgreSQL advisory lock on the store database (which change data capture requires),
named after the lakehouse: the second waits for the first. The lock is held by a session of its own and is
re-entrant within a thread. A crashed holder's session ends and PostgreSQL frees its lock. Without change data
capture nothing is locked.

``gold.dm_sales_live`` has a lock of its own (``part="live"``): the stream's fast lane refreshes it after every
micro-batch while the stream's silver runs, in another thread, hold the writer lock for much longer. Whoever
writes the live mart takes the live lock, inside the writer lock when it holds that too (never the other way
round, so the two cannot deadlock).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_guard = threading.Lock()
_local: dict[str, threading.RLock] = {}  # lock key -> the threads of this process take turns on it
_held: dict[str, list] = {}   # lock key -> [connection, depth]


def lock_key(lakehouse: str, part: str = "writer") -> str:
    return f"apparel:{lakehouse}" + ("" if part == "writer" else f":{part}")


@contextmanager
def lakehouse_lock(settings, log=print, what: str = "run", part: str = "writer") -> Iterator[None]:
    """Hold the lakehouse's writer lock (or the live mart's, ``part="live"``) for the block (no-op unless
    ``cdc.enabled``)."""
    if not settings.cdc.enabled:
        yield
        return
    import psycopg

    key = lock_key(settings.lakehouse, part)
    with _guard:
        local = _local.setdefault(key, threading.RLock())
    with local:
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
                log(f"[lock] waiting for the other writer of {settings.lakehouse}"
                    f"{'' if part == 'writer' else ' (' + part + ')'} to finish ({what})")
                conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
            _held[key] = [conn, 1]
            try:
                yield
            finally:
                del _held[key]
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))
        finally:
            conn.close()
