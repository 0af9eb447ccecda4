"""The experiment replay's weakened model: a verified copy of the current model that ranks by popularity alone."""

import shutil
from pathlib import Path

from benchmarks.experiment_replay import weakened_model
from recsys import SubstituteEngine
from recsys.model.artifact import CURRENT, read_manifest


def test_weakened_model_is_a_verified_popularity_only_copy(synthetic_model_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"  # a copy: the session's model directory stays as the other tests expect it
    shutil.copytree(synthetic_model_dir.parent, models, symlinks=True)
    current = read_manifest(models / CURRENT)

    version = weakened_model(models)

    assert version == f"{current.version}-popularity-only"
    assert (models / CURRENT).resolve().name == current.version  # the current model is left serving
    weakened = read_manifest(models / version)  # verifies every file's checksum
    assert weakened.version == version
    assert {name for name, weight in (weakened.ranker.weights or {}).items() if weight} == {"popularity"}
    assert weakened.ranker.reranker is None and weakened.ranker.history_weights is None
    assert weakened.files.keys() == current.files.keys()
    engine = SubstituteEngine.load(models / version)
    assert engine.version == version
    # a second call finds the copy rather than writing another
    assert weakened_model(models) == version
