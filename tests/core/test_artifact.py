import json
import shutil
from pathlib import Path

import pytest

from recsys import ArtifactError, SubstituteEngine
from recsys.artifact import MANIFEST, point_current, write_model
from recsys.manifest import DataSpan, Manifest
from recsys.model import FACTORS_FILE, INDEX_FILE


@pytest.fixture()
def copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    return target


def test_loads_a_good_copy(copy: Path) -> None:
    assert SubstituteEngine.load(copy).version == json.loads((copy / MANIFEST).read_text())["version"]


def test_truncated_file_is_refused(copy: Path) -> None:
    path = copy / FACTORS_FILE
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match=f"checksum mismatch for {FACTORS_FILE}"):
        SubstituteEngine.load(copy)


def test_missing_file_is_refused(copy: Path) -> None:
    (copy / INDEX_FILE).unlink()
    with pytest.raises(ArtifactError, match=f"missing file {INDEX_FILE}"):
        SubstituteEngine.load(copy)


def test_newer_format_is_refused(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["format_version"] = 99
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 99"):
        SubstituteEngine.load(copy)


def test_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not a model directory"):
        SubstituteEngine.load(tmp_path)


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    def explode(directory: Path) -> None:
        (directory / "half.npy").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_model(tmp_path, explode, Manifest(version="v1", data_span=DataSpan(start="2017-01-01", end="2017-12-31")))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ArtifactError):
        point_current(tmp_path, "v1")
