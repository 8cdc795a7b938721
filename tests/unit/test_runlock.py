"""When a run lock may be taken over (apparel.runlock.stale_reason) and its one setting, on plain dicts: no store,
no process of its own (tests/integration/test_run_lock.py runs the real thing)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from apparel.config import load_settings
from apparel.errors import ConfigError
from apparel.runlock import RunLock, _process_start, stale_reason

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=timezone.utc)


def holder(**kw) -> dict:
    base = {"run_id": "r", "host": "elsewhere", "pid": 1, "heartbeat": (NOW - timedelta(seconds=30)).isoformat()}
    return base | kw


def test_a_holder_on_another_host_is_stale_only_after_its_heartbeat_ages():
    assert stale_reason(holder(), 600, NOW) is None
    assert stale_reason(holder(), 30, NOW) is None  # exactly the limit: not yet
    assert stale_reason(holder(), 29, NOW) == "no heartbeat for 30 s (lock.stale_after is 29 s)"


def test_a_holder_on_this_host_is_stale_when_its_process_is_gone_or_another_one():
    me = socket.gethostname()
    alive = holder(host=me, pid=os.getpid(), pid_start=_process_start(os.getpid()))
    assert stale_reason(alive, 600, NOW) is None
    assert stale_reason(alive | {"pid_start": "1"}, 600, NOW) == f"its pid {os.getpid()} is another process now"
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = int(done.stdout)
    assert stale_reason(holder(host=me, pid=gone), 600, NOW) == f"its process {gone} is not running"


def test_an_unreadable_lock_is_stale():
    assert stale_reason({}, 600, NOW) == "its lock is unreadable"
    assert stale_reason(holder(heartbeat="yesterday"), 600, NOW) == "its lock is unreadable"


@pytest.mark.parametrize("value", ["0", "-5", "soon", "inf"])
def test_stale_after_must_be_seconds_above_zero(tmp_path, value):
    settings = load_settings(env="ci", environ={"APPAREL_LAKEHOUSE": str(tmp_path), "APPAREL_LOCK_STALE_AFTER": value})
    with pytest.raises(ConfigError, match=r"lock.stale_after \(APPAREL_LOCK_STALE_AFTER\) must be a number of "
                                          rf"seconds above 0, got '{value}'"):
        RunLock(settings, "r", "run", "cli")
