"""The commands that take a state URL: a password in it is warned about (it is in the process list), and the model
pointer is never moved to a version that is not a plain name. Nothing here reaches a database."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.state.store import PASSWORD_ENV, PASSWORD_FILE_ENV, SqliteState

WITH_PASSWORD = "postgresql://recsys:hunter2@127.0.0.1:1/recsys"


@pytest.mark.parametrize("args", [
    ["serve", "--model", "no-such-model", "--state", WITH_PASSWORD],
    ["models", "rollback", "--models", "{tmp}", "--state", WITH_PASSWORD],
    ["models", "rollback", "--models", "{tmp}", "--state", "host=127.0.0.1 port=1 password=hunter2"],
    ["retrain", "--feedback", "postgresql:///recsys?host=127.0.0.1&port=1&password=hunter2", "--no-progress"],
])
def test_a_password_on_the_command_line_is_warned_about(args: list[str], tmp_path: Path) -> None:
    # each command fails early (no model, nothing to roll back to, no such data): the warning comes first
    result = CliRunner().invoke(app, [arg.replace("{tmp}", str(tmp_path)) for arg in args] + (
        ["--data", str(tmp_path / "none.csv")] if args[0] == "retrain" else []))
    assert result.exit_code == 2, result.output
    warning = " ".join(result.output.split())
    assert "warning:" in warning and "process list" in warning
    assert PASSWORD_ENV in warning and PASSWORD_FILE_ENV in warning
    assert "hunter2" not in result.output


def test_no_warning_without_a_password(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["models", "rollback", "--models", str(tmp_path), "--state",
                                      "postgresql://recsys@127.0.0.1:1/recsys"])
    assert result.exit_code == 2 and "warning:" not in result.output and "process list" not in result.output


@pytest.mark.parametrize("version", ["../x", "/srv/models/v1", "..", ".tmp-v2-abc"])
def test_promote_refuses_a_version_that_is_not_a_plain_name(version: str, tmp_path: Path) -> None:
    state_file = tmp_path / "state.sqlite3"
    state = SqliteState(state_file)
    state.set_model_pointer("v1")
    state.close()
    result = CliRunner().invoke(app, ["models", "promote", version, "--models", str(tmp_path / "models"),
                                      "--state", f"sqlite:///{state_file}"])
    assert result.exit_code == 2 and "not a plain name" in result.output
    state = SqliteState(state_file)
    assert state.model_pointer() == "v1"
    state.close()
