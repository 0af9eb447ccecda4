"""Output for people and for machines: progress bars only on a terminal, and in a log (a pipe, a file, cron) one
timestamped line per stage, per step of the ranker stage and every few seconds of a long stage, without a carriage
return or a cursor movement; tables whose ids are whole in a narrow pipe; `--json` documents alone on stdout.

The commands run in process, whose stderr and stdout are not terminals, as under cron."""

import json
import re
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

import training.progress
from recsys.cli import app
from recsys.model.artifact import CURRENT, read_manifest
from recsys.model.registry import current_version, headline_metrics
from tests.synthetic import TINY
from training.progress import STAGES

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S")
NARROW = {"COLUMNS": "60"}  # a pipe's width as rich reads it: ids must stay whole all the same


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(TINY.model_dump_json())
    return path


def _train(files: dict[str, Path], config: Path, out: Path, *extra: str) -> Result:
    return CliRunner(env=NARROW).invoke(app, [
        "train", "--data", str(files["events"]), "--catalog", str(files["catalog"]), "--mapping",
        str(files["mapping"]), "--config", str(config), "--out", str(out), *extra])


def _assert_log_friendly(stderr: str) -> None:
    assert "\r" not in stderr and "\x1b[" not in stderr, "a redrawn bar or a cursor movement in a log"


def test_training_in_a_log_is_timestamped_lines(synthetic_files: dict[str, Path], tiny_config: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training.progress, "HEARTBEAT_S", 0.05)  # the synthetic stages last a second at most
    result = _train(synthetic_files, tiny_config, tmp_path / "models")
    assert result.exit_code == 0, result.output
    _assert_log_friendly(result.stderr)
    lines = [line for line in result.stderr.splitlines() if LOG_LINE.match(line)]
    done = [re.sub(r" done in .*", "", line.split(" train: ", 1)[1]) for line in lines if " done in " in line]
    assert sorted(done) == sorted(STAGES), "one line per stage"
    steps = [line for line in lines if " train: ranker: " in line and "running for" not in line]
    assert len(steps) >= 5 and any("re-ranker" in step for step in steps), steps
    assert any("running for" in line for line in lines), "no line while a stage ran on"
    # the summary's version whole, in a pipe narrower than the table; the model's path last on stdout
    version = read_manifest(tmp_path / "models" / CURRENT).version
    assert re.search(rf"model version\s+│ {version} ", result.stderr), result.stderr
    assert Path(result.stdout.strip().splitlines()[-1]).name == version


def test_progress_bars_only_on_a_terminal(synthetic_files: dict[str, Path], tiny_config: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training.progress, "stderr_is_terminal", lambda: True)
    on_terminal = _train(synthetic_files, tiny_config, tmp_path / "models")
    assert on_terminal.exit_code == 0, on_terminal.output
    assert "\r" in on_terminal.stderr and not any(LOG_LINE.match(line) for line in on_terminal.stderr.splitlines())
    quiet = _train(synthetic_files, tiny_config, tmp_path / "models", "--no-progress")
    assert quiet.exit_code == 0, quiet.output
    assert "\r" not in quiet.stderr and not any(LOG_LINE.match(line) for line in quiet.stderr.splitlines())


def test_train_json_is_the_summary_alone_on_stdout(synthetic_files: dict[str, Path], tiny_config: Path,
                                                   tmp_path: Path) -> None:
    result = _train(synthetic_files, tiny_config, tmp_path / "models", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    manifest = read_manifest(Path(summary["model_dir"]))
    assert summary["version"] == manifest.version and summary["current"] is True
    assert summary["ranker"]["source"] == manifest.ranker.source == "learned"
    assert summary["held_out"]["metrics"] == pytest.approx(headline_metrics(manifest))
    assert summary["held_out"]["queries"] == manifest.metrics["queries"]
    assert summary["counts"] == json.loads(json.dumps(manifest.counts))
    assert set(summary["stage_seconds"]) == {*STAGES, "total"}
    assert "training summary" not in result.output, "the table is for people: --json replaces it"


def test_models_list_keeps_versions_whole_in_a_pipe_and_as_json(synthetic_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    models = tmp_path / "models"
    for name in ("20261206T070102123456Z", synthetic_model_dir.name):
        shutil.copytree(synthetic_model_dir, models / name)
    (models / CURRENT).symlink_to(synthetic_model_dir.name)
    table = CliRunner(env=NARROW).invoke(app, ["models", "list", "--models", str(models)])
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[2].strip(): line for line in table.stdout.splitlines() if line.count("│") > 3}
    assert set(rows) == {"20261206T070102123456Z", synthetic_model_dir.name}, table.stdout
    assert rows[synthetic_model_dir.name].split("│")[1].strip() == "*"
    listed = CliRunner().invoke(app, ["models", "list", "--models", str(models), "--json"])
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.stdout)
    assert [entry["version"] for entry in entries] == sorted(rows)
    assert [entry["current"] for entry in entries] == [entry["version"] == current_version(models)
                                                       for entry in entries]
    assert all(entry["metrics"] == headline_metrics(read_manifest(models / entry["version"])) for entry in entries)


def test_evaluate_json_to_stdout_and_its_progress_in_a_log(synthetic_files: dict[str, Path], tiny_config: Path,
                                                           tmp_path: Path) -> None:
    trained = _train(synthetic_files, tiny_config, tmp_path / "models", "--train-until", "2017-10-08",
                     "--no-progress")
    assert trained.exit_code == 0, trained.output
    result = CliRunner(env=NARROW).invoke(app, [
        "evaluate", "--model", trained.stdout.strip().splitlines()[-1], "--data", str(synthetic_files["events"]),
        "--catalog", str(synthetic_files["catalog"]), "--mapping", str(synthetic_files["mapping"]),
        "--split", "2017-10-08", "--max-queries", "200", "--json", "-", "--plot", str(tmp_path / "e.png")])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(result.stdout)
    assert evaluation["queries"]["all"] == 200 and "ours" in evaluation["metrics"]
    _assert_log_friendly(result.stderr)
    progress = [line for line in result.stderr.splitlines() if LOG_LINE.match(line)]
    assert progress and all(" evaluate: " in line for line in progress)
    assert re.search(r" evaluate: ([\d,]+)/\1 queries \(100%\) in [\d.]+ s$", progress[-1]), progress[-1]
    assert "HR@1" in result.stderr, "the tables go to stderr when the JSON takes stdout"
