import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.cli import app
from recsys.model.artifact import CURRENT, MANIFEST
from recsys.model.registry import current_version, list_models, prune


@pytest.fixture()
def models(model_dir: Path, tmp_path: Path) -> Path:
    """Three copies of the session's model as versions v1 < v2 < v3, v3 current."""
    root = tmp_path / "models"
    root.mkdir()
    for version in ("v1", "v2", "v3"):
        shutil.copytree(model_dir, root / version)
        manifest = json.loads((root / version / MANIFEST).read_text())
        manifest["version"] = version
        (root / version / MANIFEST).write_text(json.dumps(manifest))
    (root / ".tmp-v4-abc").mkdir()  # a half-written model, never listed
    (root / CURRENT).symlink_to("v3")
    return root


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_list_promote_rollback(models: Path) -> None:
    assert [e.version for e in list_models(models)] == ["v1", "v2", "v3"]
    assert [e.version for e in list_models(models) if e.current] == ["v3"]
    assert "v3" in run("models", "list", "--models", str(models))
    run("models", "promote", "v1", "--models", str(models))
    assert current_version(models) == "v1"
    run("models", "rollback", "--models", str(models))
    assert current_version(models) == "v3"


def test_promote_refuses_a_corrupt_model(models: Path) -> None:
    (models / "v2" / "item_factors.npy").write_bytes(b"broken")
    result = CliRunner().invoke(app, ["models", "promote", "v2", "--models", str(models)])
    assert result.exit_code == 2 and "checksum mismatch" in result.output
    assert current_version(models) == "v3"


def test_prune_never_deletes_current_or_previous(models: Path) -> None:
    run("models", "promote", "v1", "--models", str(models))  # current v1, previous v3
    assert prune(models, keep=1) == ["v2"]
    assert {e.version for e in list_models(models)} == {"v1", "v3"}
    assert current_version(models) == "v1"


def test_prune_keeps_what_the_shared_state_uses(models: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The replicas' model pointer and a running experiment's arm survive a prune; an ended experiment's do not,
    nor does anything without a state (a state that does not exist is not created)."""
    from datetime import UTC, datetime

    from recsys.state.experiments import model_in, new_experiment, start_experiment
    from recsys.state.store import open_state

    for version in ("v0", "v00"):  # older than v1..v3
        shutil.copytree(models / "v1", models / version)
    for path in models.glob("v*"):
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["version"] = path.name
        (path / MANIFEST).write_text(json.dumps(manifest))
    url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    state = open_state(url)
    now = datetime.now(UTC)
    try:
        state.set_model_pointer("v1")
        for name, version, store in (("running", "v2", "s1"), ("ended", "v0", "s2")):
            start_experiment(state.experiments, new_experiment(name, version, 0.5, stores=[store], now=now,
                                                               model_exists=model_in(models)), now)
        state.experiments.stop_experiment("ended", now.isoformat(timespec="seconds"))
    finally:
        state.close()
    monkeypatch.chdir(tmp_path)  # the server's default state, state/recsys.sqlite3, is not there
    monkeypatch.delenv("RECSYS_STATE_URL", raising=False)
    monkeypatch.delenv("RECSYS_STATE_PATH", raising=False)
    output = run("models", "prune", "--keep", "1", "--models", str(models), "--state", url)
    assert {e.version for e in list_models(models)} == {"v1", "v2", "v3"}, output
    assert "kept v1" in output and "kept v2" in output and "deleted v0" in output
    run("models", "prune", "--keep", "1", "--models", str(models))  # no state: only current and previous
    assert {e.version for e in list_models(models)} == {"v3"}
    assert not (tmp_path / "state").exists()
