"""A process that holds a lakehouse's run lock (no Spark), for the lock tests on local disk and on ``s3a://``."""

from __future__ import annotations

import subprocess
import sys

# holds the lock of the lakehouse its environment names until it loses it (then releases and exits 3)
HOLDER = """
import sys, time
from apparel.config import load_settings
from apparel.runlock import RunLock
lock = RunLock(load_settings(env="ci"), sys.argv[1], "test-holder", "test", log=lambda m: print(m, flush=True))
lock.acquire()
print("held", flush=True)
while not lock.lost:
    time.sleep(0.1)
lock.release()
sys.exit(3)
"""


def start_holder(env: dict[str, str], run_id: str) -> subprocess.Popen:
    """Start a holder and wait until it has the lock."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, run_id], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    if line.strip() != "held":
        proc.kill()
        raise AssertionError(f"the lock holder did not get the lock: {line}{proc.stdout.read()}")
    return proc
