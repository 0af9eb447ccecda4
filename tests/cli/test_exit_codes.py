"""Every `recsys` command ends with one of four statuses a scheduler can act on: 0 done, 1 refused by the quality gate
(tests/training/test_nightly.py), 2 bad input or usage, 3 internal error. A bad input or an internal error is one
line on stderr, never a traceback (unless `--debug`), and a config that does not validate names the field."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.cli.common import ExitStatus


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_the_statuses_are_distinct() -> None:
    assert [int(status) for status in ExitStatus] == [0, 1, 2, 3, 130]


@pytest.mark.parametrize("args", [
    ["models", "list", "--models", "{tmp}/no-such-dir"],
    ["models", "prune", "--keep", "1", "--models", "{tmp}/no-such-dir"],
    ["models", "promote", "no-such-version", "--models", "{tmp}"],
    ["validate", "--data", "{tmp}/missing.csv"],
    ["train", "--data", "{tmp}/missing.csv", "--out", "{tmp}/models", "--no-progress"],
    ["retrain", "--data", "{tmp}/missing.csv", "--models", "{tmp}/models", "--no-progress"],
    ["evaluate", "--data", "{tmp}/missing.csv", "--no-progress"],
    ["add-items", "--catalog", "{tmp}/missing.csv", "--model", "{tmp}/no-model"],
    ["export", "--model", "{tmp}/no-model", "--out", "{tmp}/x.parquet"],
    ["serve", "--model", "{tmp}/no-model"],
    ["bench", "--model", "{tmp}/no-model", "--no-http"],
    ["keys", "list", "--state", "mysql://nowhere"],
])
def test_bad_input_is_status_2_with_one_line(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [arg.replace("{tmp}", str(tmp_path)) for arg in args])
    assert result.exit_code == ExitStatus.bad_input, result.output
    lines = _error_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output


def test_usage_errors_are_status_2(tmp_path: Path) -> None:
    for args in (["no-such-command"], ["train", "--no-such-option"], ["models", "prune", "--keep", "0"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == ExitStatus.bad_input, (args, result.output)


def test_a_config_that_does_not_validate_is_one_line_naming_each_field(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"als": {"factors": 1, "iteration": 3}, "max_neighbours": "many"}')
    result = CliRunner().invoke(app, ["train", "--config", str(config), "--data", str(tmp_path / "x.csv"),
                                      "--out", str(tmp_path / "models")])
    assert result.exit_code == ExitStatus.bad_input, result.output
    (line,) = _error_lines(result.stderr)
    assert line.startswith(f"error: --config {config}: ")
    assert "als.factors: Input should be greater than or equal to 2 (got 1)" in line
    assert "als.iteration: unknown field" in line
    assert "max_neighbours: Input should be a valid integer" in line and "'many'" in line
    assert "validation error" not in line and "errors.pydantic.dev" not in result.output


def test_a_config_that_is_not_json_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text("{als: 3")
    result = CliRunner().invoke(app, ["retrain", "--config", str(config), "--models", str(tmp_path / "models")])
    assert result.exit_code == ExitStatus.bad_input, result.output
    (line,) = _error_lines(result.stderr)
    assert line.startswith(f"error: --config {config}: Invalid JSON")


def test_a_bad_gate_option_names_the_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["retrain", "--max-drop", "-1", "--models", str(tmp_path)])
    assert result.exit_code == ExitStatus.bad_input, result.output
    (line,) = _error_lines(result.stderr)
    assert line.startswith("error: --max-drop: ")


def test_a_bad_setting_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_CORS_ORIGINS", "*")
    result = CliRunner().invoke(app, ["keys", "list"])
    assert result.exit_code == ExitStatus.bad_input, result.output
    (line,) = _error_lines(result.stderr)
    assert line.startswith("error: RECSYS_CORS_ORIGINS: ")


def _broken(*args: object, **kwargs: object) -> None:
    raise RuntimeError("disk on fire\nsecond line of detail")


@pytest.mark.parametrize("args, target", [
    (["models", "list", "--models", "{tmp}"], "recsys.model.registry.list_models"),  # a nested command group
    (["export", "--model", "{tmp}", "--out", "{tmp}/x.parquet"], "recsys.SubstituteEngine.load"),
])
def test_an_internal_error_is_status_3_with_one_line(args: list[str], target: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target, _broken)
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == ExitStatus.internal_error, result.output
    (line,) = _error_lines(result.stderr)
    assert line == "error: internal error: RuntimeError: disk on fire (run `recsys --debug ...` for the traceback)"
    debug = CliRunner().invoke(app, ["--debug", *args])
    assert debug.exit_code == ExitStatus.internal_error, debug.output
    assert "Traceback (most recent call last)" in debug.stderr and "second line of detail" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == "error: internal error: RuntimeError: disk on fire"
