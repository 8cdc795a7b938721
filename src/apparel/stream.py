"""``apparel stream start|stop|status|run``: the streaming query (:mod:`apparel.jobs.stream`) as a background
process, and its health.

``start`` runs ``apparel stream run`` detached (its own session), with its pid and log in ``stream.state_dir``;
``stop`` sends SIGTERM (the query finishes its micro-batch and stops) and waits. ``status`` reads the
query's status.json, the checkpoint's last committed offsets and Kafka's end offsets (read_committed) to
report whether it runs, its last batch, rows per batch and the lag, in messages and in seconds.
:func:`health` is what the ``apparel_stream_health`` DAG runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from apparel.cdc import topics as capture_topics
from apparel.config import Settings
from apparel.errors import SourceError
from apparel.jobs.stream import read_status, state_dir, utcnow


class StreamDown(SourceError):
    """The streaming query is not running, or lags past its threshold."""


def pid_file(settings: Settings) -> Path:
    return state_dir(settings) / "stream.pid"


def log_file(settings: Settings) -> Path:
    return state_dir(settings) / "stream.log"


def running_pid(settings: Settings) -> int | None:
    try:
        pid = int(pid_file(settings).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:  # a killed process whose parent is gone may stay a zombie until init reaps it
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return None
    except (OSError, IndexError):
        pass
    try:  # a recycled pid is not ours
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return pid
    return pid if "stream" in cmdline else None


def start(settings: Settings, log=print, timeout: float = 240, env: str | None = None) -> int:
    """Start the query in the background; wait until it has started (or failed: then raise with its log)."""
    pid = running_pid(settings)
    if pid:
        log(f"[stream] already running (pid {pid})")
        return pid
    state_dir(settings).mkdir(parents=True, exist_ok=True)
    before = read_status(settings).get("started_at")
    cmd = [sys.executable, "-m", "apparel.cli"] + (["--env", env] if env else []) + ["stream", "run"]
    with open(log_file(settings), "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    pid_file(settings).write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SourceError(f"the stream exited at start (code {proc.returncode}); last lines of "
                              f"{log_file(settings)}:\n{tail(log_file(settings))}")
        st = read_status(settings)
        if st.get("pid") == proc.pid and st.get("started_at") != before and st.get("running"):
            log(f"[stream] started (pid {proc.pid}, query {st.get('query_id')}); log {log_file(settings)}")
            return proc.pid
        time.sleep(0.5)
    raise SourceError(f"the stream did not start within {timeout:.0f} s; see {log_file(settings)}")


def stop(settings: Settings, log=print, timeout: float = 90) -> bool:
    pid = running_pid(settings)
    if not pid:
        log("[stream] not running")
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.5)
    else:
        log(f"[stream] still running after {timeout:.0f} s: killing its process group")
        os.killpg(pid, signal.SIGKILL)
    pid_file(settings).unlink(missing_ok=True)
    log("[stream] stopped")
    return True


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def committed_offsets(checkpoint: str) -> dict[str, dict[str, int]] | None:
    """The Kafka offsets up to which the query committed its last batch (the checkpoint's newest
    ``offsets/N`` with a ``commits/N``); None when the checkpoint is not on local disk or has no batch."""
    root = Path(checkpoint)
    if not (root / "commits").is_dir():
        return None
    done = sorted(int(p.name) for p in (root / "commits").iterdir() if p.name.isdigit())
    if not done:
        return None
    lines = (root / "offsets" / str(done[-1])).read_text().splitlines()
    return json.loads(lines[-1])


def end_offsets(settings: Settings, topics: list[str]) -> dict[str, dict[str, int]]:
    """Kafka's last stable offsets (what a read_committed reader can reach) of every partition of ``topics``."""
    from confluent_kafka import IsolationLevel, TopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec

    admin = AdminClient({"bootstrap.servers": settings.cdc.kafka_bootstrap})
    meta = admin.list_topics(timeout=10).topics
    wanted = {TopicPartition(t, p): OffsetSpec.latest() for t in topics if t in meta for p in meta[t].partitions}
    if not wanted:
        return {}
    got = admin.list_offsets(wanted, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=10)
    out: dict[str, dict[str, int]] = {}
    for tp, fut in got.items():
        out.setdefault(tp.topic, {})[str(tp.partition)] = fut.result().offset
    return out


def status(settings: Settings) -> dict:
    """Whether the query runs, its last batch and the lag (messages behind, and seconds since the newest event
    or heartbeat it processed)."""
    st = read_status(settings)
    pid = running_pid(settings)
    out = {"running": bool(pid), "pid": pid, "query_id": st.get("query_id"), "batch_id": st.get("batch_id"),
           "batch_finished_at": st.get("finished_at"), "batch_seconds": st.get("batch_seconds"),
           "last_events": st.get("last_events"), "last_events_batch": st.get("last_events_batch"),
           "last_seconds": st.get("last_seconds"),
           # silver runs behind the query (apparel.jobs.stream): the last micro-batch it has applied
           "facts_batch": st.get("facts_batch"),
           "silver_upto": st.get("silver_upto"), "silver_running": bool(st.get("silver_running")),
           "silver_finished_at": st.get("silver_finished_at"), "silver_seconds": st.get("silver_seconds"),
           "silver_error": st.get("silver_error"),
           "checkpoint": settings.stream.checkpoint, "log": str(log_file(settings))}
    topics = capture_topics(settings)
    try:
        ends = end_offsets(settings, topics)
        done = committed_offsets(settings.stream.checkpoint) or {}
        lag = 0
        for topic, parts in ends.items():
            for part, end in parts.items():
                lag += max(0, end - int(done.get(topic, {}).get(part, 0)))
        out["lag_messages"] = lag
    except Exception as exc:  # noqa: BLE001 - the broker may be down: say so, the rest of the status stands
        out["lag_messages"] = None
        out["lag_error"] = str(exc).splitlines()[0]
    newest = [datetime.fromisoformat(str(st[k])) for k in ("newest_commit_ts", "heartbeat_ts") if st.get(k)]
    out["lag_seconds"] = round((utcnow() - max(newest)).total_seconds(), 1) if newest else None
    return out


def health(settings: Settings, log=print) -> dict:
    """Raise :class:`StreamDown` when the query is not running or lags past ``stream.health_max_lag_seconds``;
    without change data capture there is nothing to watch (returns {"skipped": True})."""
    if not settings.cdc.enabled:
        log("[stream] change data capture is off (APPAREL_CDC): no stream to check")
        return {"skipped": True}
    st = status(settings)
    limit = settings.stream.health_max_lag_seconds
    if not st["running"]:
        raise StreamDown(f"the stream is not running (apparel stream start); last lines of its log:\n"
                         f"{tail(log_file(settings), 10)}")
    if st.get("lag_seconds") is not None and st["lag_seconds"] > limit and st.get("lag_messages"):
        raise StreamDown(f"the stream lags {st['lag_seconds']:.0f} s ({st['lag_messages']} message(s)) behind "
                         f"the store, more than {limit} s (stream.health_max_lag_seconds)")
    log(f"[stream] healthy: batch {st['batch_id']}, lag {st.get('lag_messages')} message(s), "
        f"{st.get('lag_seconds')} s")
    return st
