"""One batch run at a time on a lakehouse: ``apparel run``, ``apparel maintain`` and every spark-submit job (the
Airflow tasks) hold the lakehouse's run lock while they work.

The lock is one small object beside the tables, ``<lakehouse>/_apparel/run.lock``, holding who has it: run id,
what runs (``run``, ``maintain``, ``bronze_ingest`` ...), the trigger (``cli`` or ``airflow:<dag>/<task>``),
host, pid, start time and the last heartbeat. Taking it is an atomic create-if-absent:

- on ``s3a://``, a conditional PUT (``If-None-Match: *``; a takeover or a heartbeat replaces it with
  ``If-Match: <etag>``), which the object store answers atomically (SeaweedFS and S3 do);
- on local disk, the same compare-and-swap under an ``flock`` of ``run.lock.guard`` held for the few
  microseconds of each operation.

A second run finds the lock taken and exits with :class:`RunLockError` naming the holder. The holder
refreshes its heartbeat every ``lock.stale_after / 5`` seconds from a thread; a lock is taken over, with a
warning, when its holder is gone (same host, and its pid is not running or is another process now) or when its
heartbeat is older than ``lock.stale_after`` seconds (a frozen or unreachable holder on another host). A holder
whose lock was taken over loses it: :meth:`RunLock.check` raises before its next layer.

The change data capture stream is not a batch run: it coordinates with batch runs through the PostgreSQL
advisory lock of :mod:`apparel.locks` (both write silver). The tests' in-process pipelines take no lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from apparel.config import Settings
from apparel.errors import ApparelError, ConfigError

LOCK_PATH = "_apparel/run.lock"


class RunLockError(ApparelError):
    """Another run holds the lakehouse's lock, or this run lost it."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux's /proc), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


# --- the lock object, on local disk or on the object store: create-if-absent, read, compare-and-swap ---------

class _LocalStore:
    def __init__(self, root: str):
        self.path = Path(root) / LOCK_PATH
        self.guard = self.path.with_name("run.lock.guard")

    # small files beside the lock (``_apparel/<folder>/<name>``): the records of runs that failed before Spark
    def put_file(self, name: str, data: bytes) -> None:
        path = self.path.parent / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def files(self, folder: str) -> dict[str, bytes]:
        base = self.path.parent / folder
        return {f"{folder}/{p.name}": p.read_bytes() for p in sorted(base.glob("*.json"))} if base.is_dir() else {}

    def remove_file(self, name: str) -> None:
        (self.path.parent / name).unlink(missing_ok=True)

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.guard, "a") as g:
            fcntl.flock(g, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(g, fcntl.LOCK_UN)

    def _read(self) -> tuple[bytes, str] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def _write(self, data: bytes) -> str:
        tmp = self.path.with_name(f"run.lock.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)  # whole or not at all, even for a reader outside the guard
        return hashlib.sha256(data).hexdigest()

    def read(self) -> tuple[bytes, str] | None:
        with self._guarded():
            return self._read()

    def create(self, data: bytes) -> str | None:
        with self._guarded():
            return None if self._read() is not None else self._write(data)

    def replace(self, token: str, data: bytes) -> str | None:
        with self._guarded():
            cur = self._read()
            return self._write(data) if cur is not None and cur[1] == token else None

    def delete(self, token: str) -> bool:
        with self._guarded():
            cur = self._read()
            if cur is None or cur[1] != token:
                return False
            self.path.unlink()
            return True


class _S3Store:
    def __init__(self, settings: Settings):
        from apparel.objectstore import S3Location, client

        loc = S3Location.parse(settings.lakehouse).child(LOCK_PATH)
        self.bucket, self.key = loc.bucket, loc.key
        self.base = self.key.rsplit("/", 1)[0]
        self.client = client(settings)

    def put_file(self, name: str, data: bytes) -> None:
        import io

        self.client.put_object(self.bucket, f"{self.base}/{name}", io.BytesIO(data), len(data),
                               content_type="application/json")

    def files(self, folder: str) -> dict[str, bytes]:
        out = {}
        for obj in self.client.list_objects(self.bucket, prefix=f"{self.base}/{folder}/"):
            if obj.object_name.endswith(".json"):
                resp = self.client.get_object(self.bucket, obj.object_name)
                try:
                    out[obj.object_name[len(self.base) + 1:]] = resp.read()
                finally:
                    resp.close()
                    resp.release_conn()
        return dict(sorted(out.items()))

    def remove_file(self, name: str) -> None:
        self.client.remove_object(self.bucket, f"{self.base}/{name}")

    def _put(self, data: bytes, condition: dict[str, str]) -> str | None:
        from minio.error import S3Error

        # minio's put_object would send If-None-Match as user metadata; the request itself carries the condition
        try:
            resp = self.client._execute("PUT", self.bucket, self.key, body=data,
                                        headers={"Content-Type": "application/json", **condition})
        except S3Error as exc:
            if exc.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            raise
        return (resp.headers.get("etag") or "").strip('"')

    def read(self) -> tuple[bytes, str] | None:
        from minio.error import S3Error

        try:
            resp = self.client.get_object(self.bucket, self.key)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                return None
            raise
        try:
            return resp.read(), (resp.headers.get("etag") or "").strip('"')
        finally:
            resp.close()
            resp.release_conn()

    def create(self, data: bytes) -> str | None:
        return self._put(data, {"If-None-Match": "*"})

    def replace(self, token: str, data: bytes) -> str | None:
        return self._put(data, {"If-Match": f'"{token}"'})

    def delete(self, token: str) -> bool:
        cur = self.read()
        if cur is None or cur[1] != token:
            return False
        # a takeover between the read and the removal would lose its lock: it happens only to a lock stale
        # for lock.stale_after seconds, whose holder is releasing it at that very moment
        self.client.remove_object(self.bucket, self.key)
        return True


def stale_after(settings: Settings) -> float:
    value = (settings.raw.get("lock") or {}).get("stale_after", 600)
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"lock.stale_after (APPAREL_LOCK_STALE_AFTER) must be a number of seconds above 0, "
                          f"got {value!r}")
    return seconds


def current_holder(settings: Settings) -> dict | None:
    """Who holds the lakehouse's run lock now (None: nobody), for ``apparel status``."""
    cur = store(settings).read()
    if cur is None:
        return None
    try:
        return json.loads(cur[0])
    except ValueError:
        return {}


def store(settings: Settings):
    """The lock's store for ``settings``' lakehouse (also keeps the records of runs that failed before Spark)."""
    return _S3Store(settings) if settings.on_s3 else _LocalStore(settings.lakehouse)


# --- the lock ---------------------------------------------------------------------------------------------------

def describe(holder: dict) -> str:
    """``run <id> (<what>, <trigger>, pid <pid> on <host>, since <start>, heartbeat <time>)``."""
    return (f"run {holder.get('run_id')} ({holder.get('what')}, {holder.get('trigger')}, pid {holder.get('pid')} "
            f"on {holder.get('host')}, since {holder.get('started')}, last heartbeat {holder.get('heartbeat')})")


def stale_reason(holder: dict, stale_after: float, now: datetime | None = None) -> str | None:
    """Why ``holder``'s lock may be taken over, or None while it looks alive."""
    now = now or _now()
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        start = _process_start(pid)
        if start is None:
            return f"its process {pid} is not running"
        if holder.get("pid_start") and start != holder["pid_start"]:
            return f"its pid {pid} is another process now"
    try:
        beat = datetime.fromisoformat(str(holder.get("heartbeat")))
    except ValueError:
        return "its lock is unreadable"
    age = (now - beat).total_seconds()
    if age > stale_after:
        return f"no heartbeat for {age:.0f} s (lock.stale_after is {stale_after:g} s)"
    return None


class RunLock:
    """The lakehouse's run lock, held by this process for one run (a context manager)."""

    def __init__(self, settings: Settings, run_id: str, what: str, trigger: str, log=print):
        self.settings, self.log = settings, log
        self.stale_after = stale_after(settings)
        self.store = store(settings)
        started = _now().isoformat(timespec="seconds")
        self.holder = {"run_id": run_id, "what": what, "trigger": trigger, "host": socket.gethostname(),
                       "pid": os.getpid(), "pid_start": _process_start(os.getpid()), "started": started,
                       "heartbeat": started}
        self.token: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _data(self) -> bytes:
        return json.dumps(self.holder, sort_keys=True).encode()

    def acquire(self) -> RunLock:
        where = f"{self.settings.lakehouse}/{LOCK_PATH}"
        for _ in range(5):  # a holder that releases or is taken over meanwhile: look again
            self.token = self.store.create(self._data())
            if self.token:
                break
            cur = self.store.read()
            if cur is None:
                continue
            try:
                other = json.loads(cur[0])
            except ValueError:
                other = {}
            reason = stale_reason(other, self.stale_after)
            if reason is None:
                raise RunLockError(f"the lakehouse {self.settings.lakehouse} is in use by {describe(other)}: "
                                   f"one run at a time (lock {where}); wait for it to finish")
            self.token = self.store.replace(cur[1], self._data())
            if self.token:
                self.log(f"warning: took over the lakehouse's run lock from {describe(other)}: {reason}")
                break
        else:
            raise RunLockError(f"could not take the run lock {where}: it kept changing hands")
        self._thread = threading.Thread(target=self._beat, name="apparel-run-lock", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        interval = max(0.5, self.stale_after / 5)
        while not self._stop.wait(interval):
            self.holder["heartbeat"] = _now().isoformat(timespec="seconds")
            try:
                token = self.store.replace(self.token, self._data())
            except Exception as exc:  # noqa: BLE001 - the store unreachable for a beat: try the next one
                self.log(f"warning: run lock heartbeat failed ({exc}); retrying in {interval:g} s")
                continue
            if token is None:
                cur = self.store.read()
                self.lost = f"the run lock was taken over by {describe(json.loads(cur[0])) if cur else 'nobody'}"
                self.log(f"warning: {self.lost}")
                return
            self.token = token

    def check(self) -> None:
        """Raise when this run lost its lock (a takeover after a long freeze): it must not write on."""
        if self.lost:
            raise RunLockError(f"{self.lost}; this run stops before writing more")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.token and not self.lost:
            self.store.delete(self.token)
        self.token = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
