"""Shared fixtures: real data slices and one model trained on them, built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from recsys import Dataset, SubstituteEngine  # noqa: E402
from training.loaders import load_completejourney  # noqa: E402
from training.pipeline import TrainResult, train  # noqa: E402

REES46 = Path(__file__).resolve().parent / "data" / "rees46" / "events-2019-oct-sample.csv"
HOUSEHOLDS = 300


@pytest.fixture(scope="session")
def rees46_path() -> Path:
    if not REES46.exists():
        pytest.fail(f"REES46 sample not found at {REES46}")
    return REES46


@pytest.fixture(scope="session")
def cj_small() -> Dataset:
    """A seeded sample of real Complete Journey households."""
    return load_completejourney(households=HOUSEHOLDS, seed=0)


@pytest.fixture(scope="session")
def trained(cj_small: Dataset, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(cj_small, out_dir=tmp_path_factory.mktemp("models"), show_progress=False)


@pytest.fixture(scope="session")
def model_dir(trained: TrainResult) -> Path:
    return trained.model_dir


@pytest.fixture()
def engine(model_dir: Path) -> SubstituteEngine:
    """A fresh engine per test, so inventory changes never leak between tests."""
    return SubstituteEngine.load(model_dir)
