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
