"""What the benchmark scripts share: peak memory from /proc, the machine's context, child processes that are
always reaped (with whatever they started), medians, and printing a table."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

MARKER = "BENCH_RESULT "


def vm_hwm_kib(pid: int | str = "self") -> int | None:
    """Peak resident set size (``VmHWM``) of a live process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def java_descendants(root: int) -> list[int]:
    """Pids under ``root`` (children, grandchildren...) whose command line mentions java."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # the comm field may hold spaces: the ppid is the 2nd field after the closing paren
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: list[int] = []
    frontier = [root]
    while frontier:
        kids = [pid for pid, ppid in parents.items() if ppid in frontier]
        for pid in kids:
            try:
                if b"java" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                pass
        frontier = kids
    return found


def jvm_peak_kib() -> int | None:
    """VmHWM of this process's Spark JVM (its java descendant), while it is still alive."""
    jvms = java_descendants(os.getpid())
    return vm_hwm_kib(jvms[0]) if jvms else None


def free_ports(n: int) -> int:
    """The first of ``n`` consecutive free ports on 127.0.0.1 (a server and the ports it derives from its own)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        try:
            for k in range(1, n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
    raise SystemExit(f"no {n} consecutive free ports")


def machine_context() -> list[tuple[str, str]]:
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
        java = (out.stderr or out.stdout).strip().splitlines()[0]
    except (OSError, IndexError):
        java = "(java not found)"
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return [("nproc", str(len(os.sched_getaffinity(0)))), ("total RAM", f"{mem_kib / 1024 ** 2:.1f} GiB"),
            ("load avg", f"{load} (1, 5, 15 min) at the start"), ("java", java), ("pyspark", version("pyspark"))]


def mib(kib: float | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.0f}"


@dataclass
class ChildResult:
    returncode: int
    wall: float              # seconds from start to exit, measured by the parent
    maxrss_kib: int          # ru_maxrss of the child and the descendants it reaped (os.wait4)
    stdout: str
    stderr: str
    result: dict[str, Any] | None   # the JSON after MARKER on stdout, if any

    def tail(self, n: int = 30) -> str:
        return "\n".join((self.stdout + self.stderr).splitlines()[-n:])


def run_child(cmd: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None,
              log: Path | None = None) -> ChildResult:
    """Run ``cmd`` in a new session and wait for it; then end whatever it left in that session (a Spark JVM
    outliving its Python driver, say), so nothing the benchmark started keeps running. ``log``: where to
    keep its stdout and stderr."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fout, stderr=ferr, text=True,
                                start_new_session=True)
        try:  # wait4, not Popen.wait: it also gives the child's own peak RSS
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
        except BaseException:
            _end_group(proc.pid, grace=0)
            proc.wait()
            raise
        finally:
            _end_group(proc.pid)
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    if log is not None:
        log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}\n")
    lines = [ln for ln in out.splitlines() if ln.startswith(MARKER)]
    result = json.loads(lines[-1][len(MARKER):]) if lines else None
    return ChildResult(proc.returncode, wall, usage.ru_maxrss, out, err, result)


def _end_group(pgid: int, grace: float = 30.0) -> None:
    """End what is left of the process group the child led (only what the child started): first let it
    exit by itself for ``grace`` seconds (a Spark JVM shuts down when its Python driver has gone, and its
    shutdown hooks remove its temporary folders), then SIGTERM, then SIGKILL 30 s later."""
    def gone(wait: float) -> bool:
        deadline = time.monotonic() + wait
        while True:
            try:
                os.killpg(pgid, 0)
            except (ProcessLookupError, PermissionError):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    if gone(grace):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        if gone(30.0):
            return


def emit(result: dict[str, Any]) -> None:
    """A child's result: one marker line on stdout (the child's other output goes to stderr)."""
    print(MARKER + json.dumps(result, default=str), flush=True)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def print_table(header: list[str], rows: list[list[str]], first_width: int | None = None) -> None:
    """Left-aligned first column, right-aligned others."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    if first_width:
        widths[0] = max(widths[0], first_width)
    for row in [header] + rows:
        cells = [f"{row[0]:<{widths[0]}}"] + [f"{c:>{w}}" for c, w in zip(row[1:], widths[1:])]
        print("  ".join(cells).rstrip())
    sys.stdout.flush()
