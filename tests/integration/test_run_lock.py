"""One batch run at a time on a local lakehouse (the run lock, docs in README "One run at a time") and the run log
``ops.run_log``. The lock holder is a process of its own (tests/run_lock_helpers.py, no Spark): a second
`apparel run`, `apparel maintain` and the spark-submit entry point that Airflow's tasks run are refused, naming it;
a killed holder is taken over at once, a frozen one after `lock.stale_after`, and the frozen one, woken, stops.
The run log: a real `apparel run` killed with SIGKILL mid-run stays `running` until the next run marks it
`abandoned`; a failing and a succeeding run record their ends. The same lock on `s3a://`:
test_lakehouse_s3.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from apparel.catalog import Catalog
from apparel.config import PROJECT_ROOT, load_settings
from apparel.runlock import LOCK_PATH, RunLock, RunLockError
from apparel.runlog import RUN_LOG, batch_run, last_runs
from apparel.seed import seed_generated
from conftest import project_env, settings_in
from run_lock_helpers import start_holder

pytestmark = [pytest.mark.slow]
APPAREL = str(Path(sys.executable).parent / "apparel")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # as Spark returns timestamps (TZ=UTC)


def env_of(tmp_path: Path, **extra: str) -> dict[str, str]:
    return project_env(tmp_path) | {"APPAREL_ENV": "ci", "TZ": "UTC"} | extra


def lock_file(tmp_path: Path) -> Path:
    return tmp_path / "lakehouse" / LOCK_PATH


def holder_line(proc: subprocess.Popen, run_id: str) -> str:
    """What a refusal must name: the holder's run id, what it runs, its trigger, pid and host."""
    return f"in use by run {run_id} (test-holder, test, pid {proc.pid} on {socket.gethostname()}, since "


def test_a_second_run_is_refused_naming_the_holder_and_a_dead_one_is_taken_over(tmp_path):
    env = env_of(tmp_path)
    holder = start_holder(env, "holder-1")
    try:
        held = json.loads(lock_file(tmp_path).read_text())
        assert held["run_id"] == "holder-1" and held["pid"] == holder.pid
        # the CLI's runs, and the job Airflow's gold task submits (run here without spark-submit: the lock is
        # taken before the Spark session starts)
        for cmd in ([APPAREL, "run", "--layers", "silver,gold"], [APPAREL, "maintain"],
                    [sys.executable, str(PROJECT_ROOT / "spark_jobs" / "gold_build.py")]):
            trigger = {"APPAREL_RUN_TRIGGER": "airflow:apparel_marts/gold_build"} if "gold_build" in cmd[-1] else {}
            proc = subprocess.run(cmd, env=env | trigger, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 1, (cmd, proc.stdout, proc.stderr[-2000:])
            errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error: ")]
            assert len(errors) == 1 and holder_line(holder, "holder-1") in errors[0], (cmd, errors)
            assert f"lock {tmp_path / 'lakehouse' / LOCK_PATH}" in errors[0]
        # nothing was written: no table, no run log
        assert sorted(p.name for p in (tmp_path / "lakehouse").iterdir()) == ["_apparel"]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder is dead: the next run takes its lock over at once, and says so
    said: list[str] = []
    settings = settings_in(tmp_path)
    with RunLock(settings, "taker", "run", "cli", log=said.append):
        assert json.loads(lock_file(tmp_path).read_text())["run_id"] == "taker"
    assert said == [f"warning: took over the lakehouse's run lock from run holder-1 (test-holder, test, pid "
                    f"{holder.pid} on {socket.gethostname()}, since {held['started']}, last heartbeat "
                    f"{held['heartbeat']}): its process {holder.pid} is not running"], said
    assert not lock_file(tmp_path).exists()  # released


def test_a_frozen_holder_is_taken_over_after_stale_after_and_stops_when_it_wakes(tmp_path):
    env = env_of(tmp_path, APPAREL_LOCK_STALE_AFTER="2")
    holder = start_holder(env, "frozen")
    try:
        os.kill(holder.pid, signal.SIGSTOP)  # alive, but no heartbeat any more
        settings = load_settings(env="ci", environ=env)
        with pytest.raises(RunLockError, match="in use by run frozen"):
            RunLock(settings, "too-early", "run", "cli").acquire()
        time.sleep(3)
        said: list[str] = []
        taker = RunLock(settings, "taker", "run", "cli", log=said.append).acquire()
        try:
            assert len(said) == 1 and "took over the lakehouse's run lock from run frozen" in said[0], said
            assert "no heartbeat for" in said[0] and "(lock.stale_after is 2 s)" in said[0], said
            # the frozen holder wakes: its next heartbeat finds the lock taken, it stops without touching it
            os.kill(holder.pid, signal.SIGCONT)
            out, _ = holder.communicate(timeout=30)
            assert holder.returncode == 3, out
            assert "warning: the run lock was taken over by run taker (run, cli, pid" in out, out
            assert json.loads(lock_file(tmp_path).read_text())["run_id"] == "taker"
        finally:
            taker.release()
        assert not lock_file(tmp_path).exists()
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
            holder.kill()
            holder.wait()


def test_the_run_log_records_killed_failed_and_succeeded_runs(spark, tmp_path):
    settings = settings_in(tmp_path)
    seed_generated(settings, scale=0.05, seed=5, log=lambda m: None)
    catalog = Catalog(settings)
    started = utcnow() - timedelta(seconds=5)
    # a real `apparel run`, killed once its run is recorded (it is then extracting, before any layer ended)
    proc = subprocess.Popen([APPAREL, "run"], env=env_of(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    log0 = tmp_path / "lakehouse" / "ops" / "run_log" / "_delta_log" / "00000000000000000000.json"
    deadline = time.monotonic() + 300
    while not log0.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert log0.exists(), proc.communicate()[0][-3000:] if proc.poll() is not None else "no run log after 300 s"
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0]
    killed = json.loads(lock_file(tmp_path).read_text())["run_id"]  # it could not release its lock
    assert f"run {killed}" in out, out
    [row] = last_runs(spark, settings)
    assert (row["run_id"], row["status"], row["trigger"], row["command"]) == (killed, "running", "cli", "run")
    assert row["layers"] == "bronze,silver,gold" and row["ended_at"] is None

    # a run that fails before its Spark session (taking the dead run's lock over): its record waits in a file,
    # shown by last_runs
    said: list[str] = []
    with pytest.raises(RuntimeError, match="no workbook"):
        with batch_run(settings, "bronze", ["bronze"], trigger="spark-submit", log=said.append) as early:
            raise RuntimeError("no workbook")
    assert len(said) == 1 and f"from run {killed} (run, cli" in said[0] and "is not running" in said[0], said
    pending = tmp_path / "lakehouse" / "_apparel" / "runs" / f"{early.run_id}.json"
    assert pending.exists()
    assert [(r["run_id"], r["status"], r["error"]) for r in last_runs(spark, settings)][0] == \
        (early.run_id, "failed", "RuntimeError: no workbook")

    with pytest.raises(ValueError, match="boom"):
        with batch_run(settings, "run", ["silver"], log=said.append) as run:
            run.begin(spark)
            raise ValueError("boom")
    with batch_run(settings, "maintain", [], trigger="airflow:apparel_maintenance/maintain", log=said.append) as ok:
        ok.begin(spark)

    assert not pending.exists()  # the next run appended it
    assert len(said) == 1, said  # no other warning
    rows = {r["run_id"]: r for r in last_runs(spark, settings)}
    assert set(rows) == {killed, early.run_id, run.run_id, ok.run_id}
    assert (rows[early.run_id]["status"], rows[early.run_id]["trigger"]) == ("failed", "spark-submit")
    assert (rows[killed]["status"], rows[killed]["ended_at"]) == ("abandoned", None)
    assert rows[killed]["error"] == "ended without recording its end (killed, or its machine stopped)"
    assert (rows[run.run_id]["status"], rows[run.run_id]["error"]) == ("failed", "ValueError: boom")
    assert (rows[ok.run_id]["status"], rows[ok.run_id]["error"]) == ("succeeded", None)
    assert rows[ok.run_id]["trigger"] == "airflow:apparel_maintenance/maintain"
    for r in rows.values():
        assert r["host"] == socket.gethostname() and started <= r["started_at"] <= utcnow()
        assert r["ended_at"] is None or r["ended_at"] >= r["started_at"]
    assert rows[run.run_id]["pid"] == rows[ok.run_id]["pid"] == rows[early.run_id]["pid"] == os.getpid() \
        != rows[killed]["pid"]
    assert not lock_file(tmp_path).exists()
    assert catalog.read(spark, RUN_LOG).count() == 4
