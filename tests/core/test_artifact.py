import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recsys import ArtifactError, SubstituteEngine
from recsys.model.artifact import MANIFEST, point_current, sha256_of, write_model
from recsys.model.data import FACTORS_FILE, FORMAT_1_NAMES, INDEX_FILE, NEIGHBOURS_FILE, PAIR_SIGNALS
from recsys.model.manifest import FORMAT_VERSION, DataSpan, Manifest


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


def test_a_format_1_model_loads_and_answers_the_same(copy: Path, model_dir: Path) -> None:
    """Format 1 named the pair signals switch, coview, switch_to, trial and feedback: such a model still loads (the
    same arrays under the old names) and answers exactly as the same model in format 2."""
    arrays = dict(np.load(copy / NEIGHBOURS_FILE))
    renamed = {}
    for key, values in arrays.items():
        name, part = key.rsplit("_", 1) if not key.startswith("store_items") else (key, "")
        renamed[f"{FORMAT_1_NAMES[name]}_{part}" if name in FORMAT_1_NAMES else key] = values
    assert set(renamed) != set(arrays) and {"switch_indptr", "coview_data", "feedback_shape"} <= set(renamed)
    np.savez(copy / NEIGHBOURS_FILE, **renamed)
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["format_version"] = 1
    manifest["files"][NEIGHBOURS_FILE] = sha256_of(copy / NEIGHBOURS_FILE)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    old, new = SubstituteEngine.load(copy), SubstituteEngine.load(model_dir)
    assert old.manifest.format_version == 1 and new.manifest.format_version == FORMAT_VERSION == 2
    for name in PAIR_SIGNALS:
        assert (getattr(old.model, name) != getattr(new.model, name)).nnz == 0, name
    items = new.model.items
    customers = new.model.customers
    for i, item_id in enumerate(items.loc[items["n_customers"] > 0, "item_id"].sample(50, random_state=1)):
        customer = str(customers[i % len(customers)])
        old_answer, new_answer = (engine.substitutes(item_id, customer, k=5) for engine in (old, new))
        assert old_answer.substitutes == new_answer.substitutes


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


def test_a_newer_builds_manifest_loads_and_answers_the_same(copy: Path, model_dir: Path) -> None:
    """Keys this build does not know (a new training option, a new section) are no reason to refuse a model;
    an empty re-ranker section means none, as it always has."""
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["config"]["a_new_option"] = 1
    manifest["config"]["als"]["a_new_solver"] = "gpu"
    manifest["a_new_section"] = {"kept": True}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    engine, original = SubstituteEngine.load(copy), SubstituteEngine.load(model_dir)
    assert engine.manifest.config == original.manifest.config
    assert engine.manifest.model_extra == {"a_new_section": {"kept": True}}
    item_id = str(engine.model.items.loc[engine.model.items["n_customers"] > 0, "item_id"].iloc[0])
    assert engine.substitutes(item_id) == original.substitutes(item_id)
    manifest["ranker"]["reranker"] = {}
    (copy / MANIFEST).write_text(json.dumps(manifest))
    assert SubstituteEngine.load(copy).scorer.trees is None


def test_a_manifest_with_an_unusable_version_is_refused(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["version"] = "../elsewhere"
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="invalid manifest.*version"):
        SubstituteEngine.load(copy)
