"""The crash points (src/apparel/crashpoints.py) without Spark: a run passes every point when APPAREL_CRASH_AT is
unset or names another point, and holds at the named one (marker written, the process alive until killed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from apparel import crashpoints
from apparel.crashpoints import ENV_MARKER, ENV_POINT


def test_points_pass_when_no_point_or_another_is_named(monkeypatch):
    monkeypatch.delenv(ENV_POINT, raising=False)
    crashpoints.reached("committed:bronze.orders")
    marker = object()
    assert crashpoints.writing(marker, "bronze.orders") is marker  # the frame itself, untouched
    monkeypatch.setenv(ENV_POINT, "committed:bronze.customers")
    crashpoints.reached("committed:bronze.orders")
    assert crashpoints.writing(marker, "bronze.orders") is marker


def test_the_named_point_writes_its_marker_and_holds_until_killed(tmp_path):
    marker = tmp_path / "marker"
    code = "from apparel import crashpoints; crashpoints.reached('a'); crashpoints.reached('b'); print('passed b')"
    env = os.environ | {ENV_POINT: "b", ENV_MARKER: str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text() == "b"
        time.sleep(0.5)
        assert proc.poll() is None  # holding
    finally:
        proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and "passed b" not in out
