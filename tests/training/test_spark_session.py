"""The Spark session's settings decided before any JVM starts (no Spark needed): which runs are local, the driver
memory a local run gets by default (half the machine, at least 2 GB; none where spark-submit, a cluster or Spark's
own configuration decides), and the Spark options of `recsys train` and `retrain` refused without `--engine spark`
or with a size that is not one. The session itself is tested in the Spark suite
(tests/training/test_spark_nightly.py)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

import training.spark.session as session
from recsys.cli import app
from recsys.cli.common import ExitStatus

GIB = 2**30


@pytest.fixture(autouse=True)
def _no_spark_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PYSPARK_GATEWAY_PORT", "PYSPARK_SUBMIT_ARGS", "SPARK_DRIVER_MEMORY", "SPARK_CONF_DIR",
                 "SPARK_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("master", "submit_args", "local"), [
    ("local[2]", "", True), ("local", "", True), ("yarn", "", False), ("spark://host:7077", "", False),
    (None, "", True), (None, "--driver-memory 8g pyspark-shell", True), (None, "--master yarn pyspark-shell", False),
    (None, "--master local[4] pyspark-shell", True),
])
def test_which_runs_are_local(master: str | None, submit_args: str, local: bool,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", submit_args)
    assert session.is_local(master) is local


def test_under_spark_submit_its_master_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "41234")
    assert not session.is_local(None) and session.default_driver_memory(None) is None
    assert session.is_local("local[2]")  # an explicit master still says


@pytest.mark.parametrize(("machine", "default"), [(64 * GIB, "32g"), (23 * GIB, "11g"), (5 * GIB, "2g"),
                                                  (1 * GIB, "2g")])
def test_a_local_run_gets_half_the_machine_and_at_least_2g(machine: int, default: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "machine_memory", lambda: machine)
    assert session.default_driver_memory("local[*]") == default
    assert session.default_driver_memory(None) == default
    assert session.default_driver_memory("yarn") is None  # a cluster's driver is not this machine's to size


def test_this_machine_is_measured() -> None:
    assert 256 * 2**20 < session.machine_memory() < 2**50
    default = session.default_driver_memory("local[2]")
    assert default is not None and default.endswith("g") and int(default[:-1]) >= session.MIN_DRIVER_GB


@pytest.mark.parametrize("setting", ["submit args", "variable", "spark-defaults"])
def test_a_driver_memory_set_elsewhere_is_kept(setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if setting == "submit args":
        monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--driver-memory 6g pyspark-shell")
    elif setting == "variable":
        monkeypatch.setenv("SPARK_DRIVER_MEMORY", "6g")
    else:
        (tmp_path / "spark-defaults.conf").write_text("spark.master local[2]\nspark.driver.memory   6g\n")
        monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert session.default_driver_memory("local[2]") is None


def test_spark_defaults_without_driver_memory_leave_the_default(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "spark-defaults.conf").write_text("spark.driver.maxResultSize 2g\n# spark.driver.memory 6g\n")
    monkeypatch.setenv("SPARK_CONF_DIR", str(tmp_path))
    assert session.default_driver_memory("local[2]") is not None


@pytest.mark.parametrize("command", ["train", "retrain"])
def test_spark_options_need_the_spark_engine(command: str, tmp_path: Path) -> None:
    for option in (["--driver-memory", "4g"], ["--spark-master", "local[2]"], ["--als", "mllib"]):
        result = CliRunner().invoke(app, [command, *option, "--models" if command == "retrain" else "--out",
                                          str(tmp_path / "models")])
        assert result.exit_code == ExitStatus.bad_input, result.output
        assert f"{option[0]} needs --engine spark" in result.stderr
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("size", ["lots", "4 g", "-1g", "4gib"])
def test_a_driver_memory_that_is_not_a_size_is_refused(size: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["retrain", "--engine", "spark", "--driver-memory", size, "--models",
                                      str(tmp_path / "models")])
    assert result.exit_code == ExitStatus.bad_input, result.output
    assert f"--driver-memory: {size!r} is not a memory size such as 4g or 512m" in " ".join(result.stderr.split())
    assert not (tmp_path / "models").exists()
