"""The nightly job on Spark (marker ``spark``): `recsys retrain --engine spark` trains its candidate on Spark and the
single-machine gate judges it on the purchases of a bounded customer sample, the same sample the single-machine gate
draws; a refused candidate leaves `current` untouched, a passing one is promoted. A Java OutOfMemoryError anywhere in
Spark's error chain is one line naming `--driver-memory`; the local session listens on loopback only, with no UI."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from recsys import TrainConfig
from recsys.cli import app
from recsys.cli.common import ExitStatus
from recsys.model.artifact import CURRENT, read_manifest
from recsys.model.registry import HEADLINE_METRICS, current_version
from tests.synthetic import TINY
from training.loaders import load_dataset
from training.mapping import DataMapping
from training.nightly import GateConfig, gate_sample

pytestmark = [pytest.mark.spark, pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

#: the candidates' configuration: the tiny one without the ranker, whose inner model would be a second Spark run
NO_RANKER = TINY.model_copy(update={"ranker": TINY.ranker.model_copy(update={"enabled": False})})


def _write(config: TrainConfig, path: Path) -> Path:
    path.write_text(config.model_dump_json())
    return path


def _inputs(files: dict[str, Path]) -> list[str]:
    return ["--data", str(files["events"]), "--catalog", str(files["catalog"]), "--mapping", str(files["mapping"])]


def _retrain_on_spark(models: Path, files: dict[str, Path], config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["retrain", "--engine", "spark", "--spark-master", "local[2]", *_inputs(files),
                                    "--config", str(config), "--models", str(models), "--no-progress", *args])


def _log(models: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (models / "retrain.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single_machine_models(synthetic_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory whose current model the single-machine trainer trained on the synthetic files."""
    root = tmp_path_factory.mktemp("spark-nightly")
    config = _write(NO_RANKER, root / "config.json")
    result = CliRunner().invoke(app, ["train", *_inputs(synthetic_files), "--config", str(config), "--out",
                                      str(root / "models"), "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "models"


@pytest.fixture()
def models(single_machine_models: Path, tmp_path: Path) -> Path:
    copied = tmp_path / "models"
    shutil.copytree(single_machine_models, copied, symlinks=True)
    return copied


def test_a_spark_candidate_as_good_as_current_is_promoted(spark: Any, models: Path, synthetic_files: dict[str, Path],
                                                         tmp_path: Path) -> None:
    before = current_version(models)
    result = _retrain_on_spark(models, synthetic_files, _write(NO_RANKER, tmp_path / "config.json"))
    assert result.exit_code == 0, result.output
    (entry,) = _log(models)
    candidate = entry["candidate"]
    assert entry["promoted"] is True and entry["current"] == before != candidate
    assert current_version(models) == candidate and read_manifest(models / CURRENT).engine == "spark"
    assert set(entry["metrics"][candidate]) == set(HEADLINE_METRICS)
    assert entry["queries"][candidate] == entry["queries"][before] and entry["queries"][candidate]["all"] >= 100
    assert entry["sample_customers"] == 150  # fewer customers than the bound: every one of them
    for name in HEADLINE_METRICS:  # the same data on either engine: the same model, within float32 noise
        assert entry["metrics"][candidate][name] == pytest.approx(entry["metrics"][before][name], abs=0.01)
    assert result.stdout.strip().splitlines()[-1] == str(models / candidate)


def test_a_worse_spark_candidate_is_refused_and_current_stays(spark: Any, models: Path,
                                                             synthetic_files: dict[str, Path], tmp_path: Path) -> None:
    before = current_version(models)
    current_files = sorted(path.name for path in (models / CURRENT).iterdir())
    worse = NO_RANKER.model_copy(update={"als": NO_RANKER.als.model_copy(update={"factors": 2, "iterations": 1}),
                                         "max_candidates": 10})
    result = _retrain_on_spark(models, synthetic_files, _write(worse, tmp_path / "worse.json"))
    assert result.exit_code == ExitStatus.refused, result.output
    assert "refused: " in result.stderr
    (entry,) = _log(models)
    assert entry["promoted"] is False and entry["current"] == before
    assert current_version(models) == before
    assert sorted(path.name for path in (models / CURRENT).iterdir()) == current_files
    candidate = entry["candidate"]
    assert (models / candidate).is_dir() and read_manifest(models / candidate).engine == "spark"
    assert entry["metrics"][candidate]["HR@3"] < entry["metrics"][before]["HR@3"] - 0.01


def test_the_spark_gate_collects_the_sample_the_single_machine_gate_draws(spark: Any,
                                                                       synthetic_files: dict[str, Path]) -> None:
    from training.spark.nightly import gate_sample_spark
    from training.spark.reading import read_sources

    mapping = DataMapping.from_toml(synthetic_files["mapping"])
    known = set(TrainConfig().event_weights)
    dataset = load_dataset([str(synthetic_files["events"])], known_event_types=known, mapping=mapping,
                           catalog=synthetic_files["catalog"])
    events, _, _ = read_sources(spark, [str(synthetic_files["events"])], mapping, known, synthetic_files["catalog"])
    gate = GateConfig(max_customers=40)
    ours, theirs = gate_sample_spark(events, gate), gate_sample(dataset.events, gate)
    assert ours["customer_id"].nunique() == 40
    assert set(ours["customer_id"]) == set(theirs["customer_id"])

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        text = frame[["customer_id", "item_id", "session_id", "event_type", "store_id"]].astype(str)
        frame = pd.concat([text, frame[["timestamp", "quantity", "price"]].reset_index(drop=True)
                           .set_axis(text.index)], axis=1)
        return frame.sort_values(list(frame.columns)).reset_index(drop=True)

    pd.testing.assert_frame_equal(rows(ours), rows(theirs), check_dtype=False)


def _out_of_memory_chain(spark: Any) -> Any:
    """A real py4j error as a driver that ran out of heap raises it: an ExecutionException around a SparkException
    around the OutOfMemoryError the JVM threw for an array larger than its heap."""
    from py4j.protocol import Py4JJavaError

    jvm = spark.sparkContext._jvm
    longs = jvm.java.lang.Runtime.getRuntime().maxMemory() // 8 + 1_000_000
    with pytest.raises(Py4JJavaError) as thrown:
        jvm.java.lang.reflect.Array.newInstance(jvm.java.lang.Long.TYPE, longs)
    out_of_memory = thrown.value.java_exception
    assert out_of_memory.getClass().getName() == "java.lang.OutOfMemoryError"
    awaited = jvm.org.apache.spark.SparkException("Exception thrown in awaitResult: ", out_of_memory)
    with pytest.raises(Py4JJavaError) as thrown:
        jvm.java.util.concurrent.CompletableFuture.failedFuture(awaited).get()
    return thrown.value


def test_an_out_of_memory_error_anywhere_in_the_chain_is_named(spark: Any) -> None:
    from training.spark.session import describe_failure, java_out_of_memory

    error = _out_of_memory_chain(spark)
    message = error.java_exception.getCause().getCause().getMessage()
    assert message == "Java heap space"
    assert error.errmsg.startswith("An error occurred while calling")  # all the command line used to say
    expected = f"java.lang.OutOfMemoryError: {message}"
    assert java_out_of_memory(error) == expected
    try:
        raise RuntimeError("collecting the matrices failed") from error
    except RuntimeError as wrapped:
        assert java_out_of_memory(wrapped) == expected
    described = describe_failure(error, "3g")
    assert described is not None and described.startswith(f"spark: out of Java memory ({expected}): raise "
                                                           "--driver-memory (it was 3g)")
    jvm = spark.sparkContext._jvm
    with pytest.raises(Exception) as other:
        jvm.java.lang.Integer.parseInt("twelve")
    assert java_out_of_memory(other.value) is None
    assert describe_failure(other.value) == 'spark: For input string: "twelve"'
    assert describe_failure(ValueError("not Spark's")) is None


def test_the_command_line_says_out_of_memory_in_one_line(spark: Any, synthetic_files: dict[str, Path],
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.spark.trainer

    error = _out_of_memory_chain(spark)

    def train_spark(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(training.spark.trainer, "train_spark", train_spark)
    result = CliRunner().invoke(app, ["train", "--engine", "spark", *_inputs(synthetic_files), "--driver-memory",
                                      "3g", "--out", str(tmp_path / "models"), "--no-progress"])
    assert result.exit_code == ExitStatus.bad_input, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: spark: out of Java memory (java.lang.OutOfMemoryError: Java heap space): raise "
                           "--driver-memory (it was 3g)")
    assert "Traceback" not in result.output and not (tmp_path / "models").exists()


def _listening(pid: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses process ``pid`` listens on (TCP), from /proc: its socket inodes in its namespace's tables."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(descriptor)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            # the kernel writes each 32-bit word in host (little-endian) order
            ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            addresses.append(ipaddress.ip_address(ordered))
    return addresses


def _descendants(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                children += [int(entry.name), *_descendants(int(entry.name))]
    return children


@pytest.mark.skipif(not Path("/proc/self/net/tcp").exists(), reason="reads the sockets from Linux's /proc")
def test_a_local_session_listens_on_loopback_only_with_no_ui(spark: Any) -> None:
    conf = spark.sparkContext.getConf()
    assert conf.get("spark.driver.host") == conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert conf.get("spark.ui.enabled") == "false" and spark.sparkContext.uiWebUrl is None
    numbers = spark.range(100)
    numbers.groupBy((numbers["id"] % 7).alias("k")).count().collect()  # a shuffle: every service up
    jvms = [pid for pid in _descendants(os.getpid()) if Path(f"/proc/{pid}/comm").read_text().strip() == "java"]
    assert jvms, "no Spark JVM under this process"
    addresses = [address for pid in jvms for address in _listening(pid)]
    assert len(addresses) >= 2  # the driver's RPC and block manager at least (py4j's gateway too)
    for address in addresses:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        assert address.is_loopback or (mapped is not None and mapped.is_loopback), address


def test_the_driver_memory_asked_for_is_the_jvm_heap(spark: Any) -> None:
    """The tests' session asked ``spark_session`` for 2g, as ``--driver-memory 2g`` does: the JVM's heap is that."""
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    assert spark.sparkContext.getConf().get("spark.driver.memory") == "2g"
    assert 1.5 * 2**30 < heap <= 2 * 2**30
