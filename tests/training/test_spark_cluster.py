"""`recsys train --engine spark` on a real Spark standalone cluster (marker ``spark``): a master and two workers
started from pyspark's own distribution, on loopback only, each worker with 1 core and 1 GB. The model the cluster
trains answers as the local-mode model of the same data; the executors run Spark SQL only, with no Python at all (a
Python UDF or a Python RDD would fail: the executors' Python is a program that does not exist) and no access to the
project (the workers run outside the repository, without PYTHONPATH). The nightly script of docs/operations.md runs
on the cluster too, as it is written there: `recsys validate`, then `recsys retrain --engine spark` promoting a
candidate as good as `current` to a replica that follows the state's model pointer, and refusing a worse one with
exit 1, `current` and the pointer untouched.

The cluster's drivers are `recsys` subprocesses: a driver's master is fixed when its JVM starts, and the test run's
local-mode session (tests/training/conftest.py) may already be running in this process."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from benchmarks.training_scale import SparkCluster as Cluster
from benchmarks.training_scale import spark_cluster
from recsys.cli import app
from recsys.cli.common import ExitStatus
from recsys.model.artifact import CURRENT, read_manifest
from recsys.model.registry import current_version
from recsys.state.store import open_state
from serving.process import start, stop, wait_ready
from tests.synthetic import TINY
from tests.training.test_spark import _assert_same_matrix
from tests.training.test_spark_nightly import _listening

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

LOOPBACK = "127.0.0.1"
WORKERS = 2
#: the ranker off, as in the nightly tests: its inner model would be a second Spark training on 2 shared cores
NO_RANKER = TINY.model_copy(update={"ranker": TINY.ranker.model_copy(update={"enabled": False})})
#: what the executors would start for a Python UDF or a Python RDD: nothing, so any Python on them fails the run
NO_PYTHON = "/nonexistent/executors-run-no-python"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
NIGHTLY_HEADING = "### A nightly on the lake: validate, retrain on Spark, promote to every replica"
#: the partition the lake holds: the day after the synthetic retailer's last event
NIGHTLY_DAY = "2017-12-31"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A standalone master and two workers (1 core, 1 GB each) on free loopback ports, stopped by PID at the end:
    the training cost curve's cluster (``benchmarks.training_scale.spark_cluster``)."""
    with spark_cluster(tmp_path_factory.mktemp("spark-cluster"), WORKERS, "1g") as found:
        yield found


def _driver_env() -> dict[str, str]:
    """A ``recsys`` driver's environment: on loopback with no UI, and executors that cannot start Python."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("PYSPARK", "SPARK"))}
    # one try per task: the Python probe fails at once instead of four times
    submit = ["--conf", "spark.ui.enabled=false", "--conf", "spark.executor.memory=512m", "--conf",
              "spark.sql.shuffle.partitions=8", "--conf", "spark.task.maxFailures=1", "pyspark-shell"]
    return env | {"SPARK_LOCAL_IP": LOOPBACK, "PYSPARK_SUBMIT_ARGS": " ".join(submit), "PYSPARK_PYTHON": NO_PYTHON}


#: a Spark driver that runs ``recsys`` command lines (JSON, argv[1]) one after the other on one session, then
#: (argv[2] "probe") asks the executors for Python, to show that they would have failed had the commands asked
_DRIVER = """
import json, sys
from typer.testing import CliRunner
from recsys.cli import app
runs = [CliRunner().invoke(app, command) for command in json.loads(sys.argv[1])]
results = [{"exit_code": run.exit_code, "stdout": run.stdout, "stderr": run.stderr} for run in runs]
if sys.argv[2:] == ["probe"]:
    from pyspark.sql import SparkSession
    try:
        SparkSession.getActiveSession().sparkContext.parallelize([1, 2], 2).map(lambda x: x).count()
        results.append({"exit_code": 0, "stdout": "", "stderr": ""})
    except Exception as exc:
        results.append({"exit_code": 1, "stdout": "", "stderr": str(exc)[:3000]})
print(json.dumps(results))
"""


@dataclass(frozen=True)
class Run:
    exit_code: int
    stdout: str
    stderr: str


def _recsys_on(cluster: Cluster, *commands: list[str], cwd: Path, probe: bool = False) -> list[Run]:
    """``recsys`` command lines in a process of their own, the Spark driver of one application on ``cluster``
    (one driver JVM and one executor per worker for them all, as start-up is most of their time on 2 cores).
    ``probe``: one more run, a Python RDD on the same executors (exit code 1 and Spark's error when it failed)."""
    on_cluster = [[*command, "--engine", "spark", "--spark-master", cluster.master_url, "--no-progress"]
                  for command in commands]
    result = subprocess.run([sys.executable, "-c", _DRIVER, json.dumps(on_cluster), *(["probe"] if probe else [])],
                            env=_driver_env(), cwd=cwd, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-5000:]
    return [Run(**run) for run in json.loads(result.stdout.strip().splitlines()[-1])]


def _inputs(files: dict[str, Path]) -> list[str]:
    return ["--data", str(files["events"]), "--catalog", str(files["catalog"]), "--mapping", str(files["mapping"])]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spark-cluster-config") / "config.json"
    path.write_text(NO_RANKER.model_dump_json())
    return path


@pytest.fixture(scope="module")
def cluster_model(cluster: Cluster, synthetic_files: dict[str, Path], config_file: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic retailer trained by ``recsys train`` with the cluster as its master: the models directory."""
    root = tmp_path_factory.mktemp("spark-cluster-train")
    result, python_probe = _recsys_on(cluster, ["train", *_inputs(synthetic_files), "--config", str(config_file),
                                                "--out", str(root / "models")], cwd=root, probe=True)
    assert result.exit_code == 0, result.stdout + result.stderr
    # the control: the same executors, asked for Python, fail: the training above asked them for none
    assert python_probe.exit_code == 1 and NO_PYTHON in python_probe.stderr, python_probe.stderr
    assert Path(result.stdout.strip().splitlines()[-1]).resolve() == (root / "models" / CURRENT).resolve()
    return root / "models"


@pytest.fixture(scope="module")
def local_model(spark: Any, synthetic_files: dict[str, Path], config_file: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same data and configuration trained in local mode, on the test run's session."""
    out = tmp_path_factory.mktemp("spark-local-train") / "models"
    result = CliRunner().invoke(app, ["train", "--engine", "spark", "--spark-master", "local[2]",
                                      *_inputs(synthetic_files), "--config", str(config_file), "--out", str(out),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    return out


def test_the_cluster_listens_on_loopback_only(cluster: Cluster) -> None:
    state = cluster.state()
    assert state["status"] == "ALIVE" and len(state["workers"]) == WORKERS
    assert all(worker["cores"] == 1 and worker["memory"] == 1024 for worker in state["workers"])
    if not Path("/proc/self/net/tcp").exists():
        pytest.skip("reads the sockets from Linux's /proc")
    for pid in cluster.pids:
        addresses = _listening(pid)
        assert len(addresses) >= 2, pid  # RPC and web UI at least
        for address in addresses:
            mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
            assert address.is_loopback or (mapped is not None and mapped.is_loopback), (pid, address)


def test_the_cluster_trains_the_local_mode_model(cluster: Cluster, cluster_model: Path, local_model: Path) -> None:
    from recsys import SubstituteEngine
    from recsys.model.data import ModelData

    # the application ran on the cluster, an executor on each worker (that they needed no Python: cluster_model)
    application = min((app for app in cluster.state()["completedapps"] if app["name"] == "recsys-train"),
                      key=lambda app: app["starttime"])  # the training: the nightly's application comes later
    assert application["state"] == "FINISHED"
    for work in cluster.worker_dirs:
        (executor_dir,) = [path for path in (work / application["id"]).iterdir() if path.is_dir()]
        assert (executor_dir / "stderr").is_file()

    ours, theirs = read_manifest(cluster_model / CURRENT), read_manifest(local_model / CURRENT)
    assert ours.engine == theirs.engine == "spark"
    # the events were read by the executors, the catalog by the driver: both sides saw the same files
    assert ours.counts == theirs.counts
    assert [s.model_dump() for s in ours.sources] == [s.model_dump() for s in theirs.sources]
    cluster_data, local_data = ModelData.load(cluster_model / CURRENT), ModelData.load(local_model / CURRENT)
    pd.testing.assert_frame_equal(cluster_data.items, local_data.items, rtol=1e-9, check_exact=False)
    for name in ("bought_instead", "switched_to", "tried", "viewed_together", "customer_weight", "customer_count"):
        _assert_same_matrix(getattr(local_data, name), getattr(cluster_data, name))

    # what `recsys serve` answers: the same substitutes, in the same order, for a sample of items and customers
    on_cluster, in_local_mode = SubstituteEngine.load(cluster_model / CURRENT), SubstituteEngine.load(
        local_model / CURRENT)
    items = local_data.items["item_id"].astype(str)
    customers: list[str | None] = [None, *local_data.customers.astype(str)[:5]]
    answered = 0
    for item in items.iloc[:: max(1, len(items) // 40)]:
        for customer in customers:
            expected = [(s.item_id, round(s.score, 5)) for s in in_local_mode.substitutes(item, customer, k=5)]
            assert [(s.item_id, round(s.score, 5)) for s in on_cluster.substitutes(item, customer, k=5)] == expected
            answered += bool(expected)
    assert answered >= 100


def _documented_nightly() -> str:
    """The nightly script of docs/operations.md: the ``#!/bin/sh`` code block right after its heading."""
    text = OPERATIONS.read_text()
    heading = f"\n{NIGHTLY_HEADING}\n"
    if heading not in text:
        pytest.fail(f"{OPERATIONS} has no heading {NIGHTLY_HEADING!r}")
    section = text.split(heading, 1)[1]
    block = re.search(r"^```(?:bash|sh)\n(#!/bin/sh\n.*?)^```$", section, re.DOTALL | re.MULTILINE)
    # nothing between the heading and the script but prose: no other code block, no other heading
    if block is None or "```" in section[:block.start()] or re.search(r"^#+ ", section[:block.start()], re.MULTILINE):
        pytest.fail(f"{OPERATIONS}: no #!/bin/sh code block right after {NIGHTLY_HEADING!r}")
    return block.group(1)


def _lake(files: dict[str, Path], root: Path) -> Path:
    """The synthetic retailer laid out as the script reads a lake: ``events/day=DAY/`` (a parquet part) and
    ``products.parquet``."""
    partition = root / "events" / f"day={NIGHTLY_DAY}"
    partition.mkdir(parents=True)
    pd.read_csv(files["events"]).to_parquet(partition / "part-00000.parquet", index=False)
    pd.read_csv(files["catalog"]).to_parquet(root / "products.parquet", index=False)
    return root


def _model_pointer(state_url: str) -> str | None:
    state = open_state(state_url, must_exist=True)
    try:
        return state.model_pointer()
    finally:
        state.close()


def _served_version(base_url: str) -> object:
    return httpx.get(f"{base_url}/readyz", timeout=10).json()["model_version"]


def _wait_until_served(base_url: str, version: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while (served := _served_version(base_url)) != version:
        assert time.monotonic() < deadline, f"the replica serves {served}, not {version}, after {timeout_s:.0f} s"
        time.sleep(0.2)


def _new_application(cluster: Cluster, known: set[str], timeout_s: float = 30) -> str:
    """The id of the one application the cluster completed besides ``known``: a run was the cluster's."""
    deadline = time.monotonic() + timeout_s
    while not (new := {str(app["id"]) for app in cluster.state()["completedapps"]} - known):
        assert time.monotonic() < deadline, "no application completed on the cluster"
        time.sleep(0.5)
    (application,) = new
    return application


def test_the_documented_nightly_runs_on_the_cluster(cluster: Cluster, local_model: Path,
                                                    synthetic_files: dict[str, Path], config_file: Path,
                                                    tmp_path: Path) -> None:
    """docs/operations.md's nightly script, run with ``sh`` as it is written, its site values in the environment:
    a missing partition stops it at validate (exit 2); a candidate as good as `current` is promoted (exit 0) and a
    replica on the same state serves it; a worse one is refused (exit 1) with `current` and the pointer kept."""
    script = tmp_path / "nightly.sh"
    script.write_text(_documented_nightly())
    # RECSYS_HOME as the script expects it: .venv/bin/recsys, models/, mapping.toml and logs/
    home = tmp_path / "srv-recsys"
    (home / "logs").mkdir(parents=True)
    interpreter_bin = Path(sys.executable).parent
    if not (interpreter_bin / "recsys").is_file():
        pytest.fail(f"the script runs .venv/bin/recsys: no recsys next to {sys.executable}")
    (home / ".venv").mkdir()
    (home / ".venv" / "bin").symlink_to(interpreter_bin)
    shutil.copy(synthetic_files["mapping"], home / "mapping.toml")
    models = home / "models"
    shutil.copytree(local_model, models, symlinks=True)
    before = current_version(models)
    assert before is not None
    lake = _lake(synthetic_files, tmp_path / "lake")
    lake_copy = shutil.copytree(lake, tmp_path / "lake-copy")
    # the replicas' state, its pointer on the model they serve; a SQLite file, so the URL holds no password
    state_url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    state = open_state(state_url)
    try:
        state.set_model_pointer(before)
    finally:
        state.close()
    env = _driver_env() | {"RECSYS_HOME": str(home), "LAKE": str(lake), "LAKE_COPY": str(lake_copy),
                           "SPARK_MASTER": cluster.master_url, "DRIVER_MEMORY": "1g", "DAY": NIGHTLY_DAY,
                           "TRAIN_CONFIG": str(config_file), "RECSYS_STATE_URL": state_url}

    def nightly(**overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", str(script)], env=env | overrides, cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)

    # a day the lake copy lacks: validate refuses it in seconds, and no Spark training starts
    missing_day = nightly(DAY="2018-01-01")
    assert missing_day.returncode == ExitStatus.bad_input, missing_day.stdout + missing_day.stderr
    assert not (models / "retrain.jsonl").exists() and _model_pointer(state_url) == before

    replica, process = start(models / CURRENT, {"RECSYS_STATE_URL": state_url, "RECSYS_MODELS_DIR": str(models)},
                             cwd=home)
    try:
        assert wait_ready(replica, 120, process), "the replica did not become ready"
        assert _served_version(replica) == before
        applications = {app["id"] for app in cluster.state()["completedapps"]}

        promoted = nightly()
        assert promoted.returncode == ExitStatus.done, promoted.stdout + promoted.stderr
        assert "\r" not in promoted.stderr, "Spark's stage bars in a cron log"
        report = json.loads((home / "logs" / f"validate-{NIGHTLY_DAY}.json").read_text())
        assert any(f"lake-copy/events/day={NIGHTLY_DAY}" in source["source"] for source in report["sources"])
        assert report["counts"]["events"] > 0
        first = json.loads((models / "retrain.jsonl").read_text())
        candidate = first["candidate"]
        assert first["promoted"] is True and first["current"] == before != candidate
        assert current_version(models) == candidate and read_manifest(models / CURRENT).engine == "spark"
        assert _model_pointer(state_url) == candidate
        assert promoted.stdout.strip().endswith(f"replicas -> {candidate}")
        _wait_until_served(replica, candidate, 60)  # the replica followed the pointer by itself
        applications.add(_new_application(cluster, applications))  # retrained on the cluster, not in local mode

        # a worse candidate (2-dimensional embeddings, one ALS pass, 10 candidates) behind the same gate
        worse = tmp_path / "worse.json"
        worse.write_text(NO_RANKER.model_copy(update={
            "als": NO_RANKER.als.model_copy(update={"factors": 2, "iterations": 1}), "max_candidates": 10,
        }).model_dump_json())
        refused = nightly(TRAIN_CONFIG=str(worse))
        assert refused.returncode == ExitStatus.refused, refused.stdout + refused.stderr
        assert "refused: " in refused.stderr and "replicas -> " not in refused.stdout
        # the refusal moved nothing: `current`, the pointer and the replica keep the promoted candidate, whose
        # files the gate did not touch
        assert current_version(models) == candidate and _model_pointer(state_url) == candidate
        assert (models / CURRENT).resolve() == (models / candidate).resolve()
        read_manifest(models / CURRENT)  # every checksum verified
        assert _served_version(replica) == candidate
        _new_application(cluster, applications)
    finally:
        stop(process)
    second = json.loads((models / "retrain.jsonl").read_text().splitlines()[1])
    assert second["promoted"] is False and second["current"] == candidate != second["candidate"]
    assert read_manifest(models / second["candidate"]).engine == "spark"
