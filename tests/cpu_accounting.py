"""CPU seconds per test, for the suite's time budget: on 2 cores the suite is bound by CPU, not by waiting, so a
test's CPU is what it costs the other worker.

Each test's figure is the CPU spent from its setup to its teardown by the pytest process (or xdist worker) and its
descendants: the Spark JVM it drives and every process it starts (a `spark-submit`, `apparel run`, `airflow dags
test`, with their own JVMs). A module-scoped fixture counts for the test that builds it. A thread samples the
process tree each second (a process that lives less than that is missed, and the last second of one that ends is
lost); servers that detach from the tree when they start (PostgreSQL, Trino, Kafka, the streaming query) are not
counted. The figure goes into the JUnit report as the test's ``cpu_seconds`` property, and the end of the run
prints the sum by module."""

from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path

import pytest

TICK = os.sysconf("SC_CLK_TCK")
KEY = "cpu_seconds"
INTERVAL = 1.0  # seconds between samples
_by_module: dict[str, float] = collections.defaultdict(float)


def tree_cpu(root: int | None = None) -> dict[tuple[int, int], int]:
    """CPU clock ticks (user + system, without waited-for children: each is a process of the tree) of ``root``
    (this process by default) and each live descendant, by (pid, start time)."""
    stats: dict[int, tuple[int, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = text.rsplit(")", 1)[1].split()
        # ppid, utime + stime, start time
        stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19]))
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, (ppid, _, _) in stats.items():
        children[ppid].append(pid)
    found, todo = {}, [root or os.getpid()]
    while todo:
        pid = todo.pop()
        if pid in stats:
            found[(pid, stats[pid][2])] = stats[pid][1]
        todo += children.get(pid, [])
    return found


class Sampler:
    """The highest CPU seen for each process of the tree, sampled every INTERVAL seconds by a daemon thread."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], int] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._loop, name="cpu-accounting", daemon=True).start()

    def sample(self) -> dict[tuple[int, int], int]:
        now = tree_cpu()
        with self.lock:
            for key, ticks in now.items():
                self.seen[key] = max(ticks, self.seen.get(key, 0))
            return dict(self.seen)

    def _loop(self) -> None:
        while True:
            time.sleep(INTERVAL)
            self.sample()


_sampler: Sampler | None = None
_start: dict[str, dict[tuple[int, int], int]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    global _sampler
    if _sampler is None:
        _sampler = Sampler()
    _start[item.nodeid] = _sampler.sample()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    before = _start.pop(item.nodeid, None)
    if before is not None and _sampler is not None:
        after = _sampler.sample()
        ticks = sum(t - before.get(key, 0) for key, t in after.items())
        item.user_properties.append((KEY, round(ticks / TICK, 1)))


def pytest_runtest_logreport(report):
    """Sum by module, where the reports arrive (the xdist controller, or the one process)."""
    if report.when == "teardown":
        for key, value in report.user_properties:
            if key == KEY:
                _by_module[report.nodeid.split("::", 1)[0]] += float(value)


def pytest_terminal_summary(terminalreporter):
    if not _by_module:
        return
    total = sum(_by_module.values())
    terminalreporter.write_sep("=", f"CPU seconds by module: {total:,.0f} in all (tests/cpu_accounting.py)")
    for module, seconds in sorted(_by_module.items(), key=lambda kv: -kv[1])[:25]:
        terminalreporter.write_line(f"{seconds:9,.0f}  {module}")
