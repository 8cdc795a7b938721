"""The same pipeline on a Spark standalone cluster (issue 12, point 5; docs/topology.md): a master and 2 workers
started by scripts/spark-cluster.sh (through `scripts/services.sh up spark`), `apparel run` of the generated sample
with APPAREL_SPARK_MASTER pointing at the master. Its executors run on the workers (the master lists the finished
application and its executors' work folders hold their logs), the jars reach them, the rows the jobs must read
once are checkpointed to shared storage rather than kept on an executor, and silver and gold equal the session's
local-mode run of the same sample and day (`sample_lake`), type-aware."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from apparel.catalog import TABLES, Catalog
from apparel.config import PROJECT_ROOT, load_settings
from apparel.seed import seed_dataset
from conftest import SAMPLE_RUN_DATE, assert_same_rows, in_parallel, project_env, quiet

pytestmark = [pytest.mark.slow]
SERVICES = PROJECT_ROOT / "scripts" / "services.sh"


def free_ports(n: int) -> list[int]:
    """n consecutive free ports (the master's UI, then one per worker)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65000:
            continue
        try:
            for k in range(1, n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + k))
            return list(range(base, base + n))
        except OSError:
            continue
    raise RuntimeError(f"no {n} consecutive free ports")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = free_ports(3)[0]
    folder = tmp_path_factory.mktemp("spark_cluster")
    env = os.environ | {"APPAREL_SPARK_CLUSTER_URL": f"spark://127.0.0.1:{port}",
                        "APPAREL_SPARK_CLUSTER_UI_PORT": str(ui), "APPAREL_SERVICES_DIR": str(folder / "services")}

    def services(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SERVICES), cmd, "spark"], env=env, capture_output=True, text=True,
                              timeout=300)

    try:
        up = services("up")
        assert up.returncode == 0, up.stderr[-3000:]
        yield {"url": f"spark://127.0.0.1:{port}", "ui": ui, "env": env, "dir": folder / "services" / "spark"}
    finally:
        services("down")


def master_state(ui: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=10) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def cluster_run(cluster, sample, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster_lake")
    # the local environment: its jars leave out the object store's (a local lakehouse), which each executor
    # would otherwise copy (the AWS SDK bundle is 686 MB); with the JVM flags of the tests' Spark (conf/ci.yaml)
    # for the driver and the executors
    ci = load_settings(env="ci").spark
    env = project_env(folder) | {"APPAREL_ENV": "local", "APPAREL_SPARK_MASTER": cluster["url"], "TZ": "UTC",
                                 "APPAREL_SERVICES_DIR": cluster["env"]["APPAREL_SERVICES_DIR"],
                                 "APPAREL_SPARK_JAVA_OPTIONS": ci["java_options"],
                                 "APPAREL_SPARK_EXECUTOR_JAVA_OPTIONS": ci["executor_java_options"]}
    settings = load_settings(environ=env)
    seed_dataset(settings, sample, log=quiet)
    proc = subprocess.run([sys.executable, "-m", "apparel.cli", "run", "--run-date", SAMPLE_RUN_DATE.isoformat()],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return {"settings": settings, "output": proc.stdout + proc.stderr}


def test_the_master_lists_both_workers_alive(cluster):
    state = master_state(cluster["ui"])
    assert state["status"] == "ALIVE"
    assert [w["state"] for w in state["workers"]] == ["ALIVE", "ALIVE"]
    assert all(w["cores"] == 1 for w in state["workers"])


def test_the_run_ran_its_executors_on_the_workers(cluster, cluster_run):
    apps = master_state(cluster["ui"])["completedapps"]
    assert [a["name"] for a in apps] == ["django-apparel"]
    assert apps[0]["state"] == "FINISHED"
    # each worker started an executor of the application: its work folder holds the executor's logs
    app_id = apps[0]["id"]
    for n in (1, 2):
        executors = list((cluster["dir"] / f"work-{n}" / app_id).iterdir())
        assert executors and all((e / "stderr").exists() for e in executors)


def test_the_cluster_gives_the_tables_of_local_mode(spark, cluster_run, sample_lake):
    ours, local = Catalog(cluster_run["settings"]), Catalog(sample_lake.settings)
    names = sorted(n for n in TABLES if n.split(".")[0] in ("silver", "gold", "quarantine") and local.exists(spark, n))
    assert len(names) >= 20
    in_parallel(names, lambda n: assert_same_rows(ours.read(spark, n), local.read(spark, n)))


def test_checkpoints_went_to_shared_storage_and_were_deleted_at_exit(cluster_run):
    folder = Path(cluster_run["settings"].lakehouse) / "_spark_checkpoints"
    assert folder.is_dir()  # the application's checkpoint folder was made there (not on an executor)
    assert not [p for p in folder.rglob("*") if p.is_file()]  # and deleted when the run ended
