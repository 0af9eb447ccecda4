"""`recsys serve` finds its model as docs/deployment.md tells operators: `--model` when given, else
`RECSYS_MODEL_PATH`, else `models/current`. The command runs in process up to the server's start, which is
replaced by a recorder of the application's settings."""

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import serving.app
from recsys.cli import app
from recsys.cli.common import ExitStatus


@pytest.fixture()
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    """The settings of each application `recsys serve` would have started (nothing listens)."""
    import uvicorn

    settings: list[Any] = []
    monkeypatch.setattr(serving.app, "create_app", lambda given: settings.append(given) or object())
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setenv("RECSYS_AUTH", "open")  # no state or keys needed to start
    monkeypatch.setenv("RECSYS_STATE_PATH", "")
    monkeypatch.chdir(tmp_path)  # no models/current and no .env here
    for name in ("RECSYS_MODEL_PATH", "RECSYS_STATE_URL"):
        monkeypatch.delenv(name, raising=False)
    return settings


def _serve(*args: str) -> Any:
    return CliRunner().invoke(app, ["serve", "--no-access-log", *args])


def test_the_environment_names_the_model_when_the_option_does_not(started: list[Any], synthetic_model_dir: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_MODEL_PATH", str(synthetic_model_dir))
    result = _serve()
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert settings.model_path == synthetic_model_dir


def test_the_option_wins_over_the_environment(started: list[Any], synthetic_model_dir: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_MODEL_PATH", str(tmp_path / "elsewhere"))
    result = _serve("--model", str(synthetic_model_dir))
    assert result.exit_code == 0, result.output
    (settings,) = started
    assert settings.model_path == synthetic_model_dir


def test_a_wrong_environment_path_is_refused_naming_it(started: list[Any], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_MODEL_PATH", str(tmp_path / "no-such-model"))
    result = _serve()
    assert result.exit_code == ExitStatus.bad_input and str(tmp_path / "no-such-model") in result.stderr
    assert not started


def test_without_either_the_default_is_models_current(started: list[Any]) -> None:
    result = _serve()
    assert result.exit_code == ExitStatus.bad_input and "models/current" in result.stderr
    assert not started
