"""Shared fixtures: the data sets and one model trained on each, built once per test session.

Two tiers share these fixtures (see docs/testing.md):

- the fast tier (the default suite) runs on the synthetic retailer of :mod:`tests.synthetic`, whose model trains
  in seconds, and on the REES46 sample (17,435 rows in the repository);
- the real-data tier (marker ``realdata``, ``make test-realdata``) runs on The Complete Journey.

``trained``, ``model_dir``, ``engine`` and ``dataset`` are parametrized by ``source``: a contract test that asks for
them runs on the synthetic model in the fast tier and again on the Complete Journey model in the real-data tier
(the ``cj`` parameter carries the ``realdata`` marker). A test that judges real data asks for ``cj_small`` itself
and is marked ``realdata``.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from recsys import Dataset, SubstituteEngine, TrainConfig  # noqa: E402
from tests.synthetic import TINY, synthetic_retailer, write_files  # noqa: E402
from training.loaders import DataMapping, load_completejourney  # noqa: E402
from training.pipeline import TrainResult, train  # noqa: E402

REES46 = Path(__file__).resolve().parent / "data" / "rees46" / "events-2019-oct-sample.csv"
#: the example mapping that derives catalog attributes from The Complete Journey's product types
CJ_MAPPING = Path(__file__).resolve().parents[1] / "docs" / "mappings" / "completejourney.toml"
HOUSEHOLDS = 300
SYNTHETIC, COMPLETE_JOURNEY = "synthetic", "cj"


@pytest.fixture(scope="session")
def rees46_path() -> Path:
    if not REES46.exists():
        pytest.fail(f"REES46 sample not found at {REES46}")
    return REES46


@pytest.fixture(scope="session")
def synthetic() -> Dataset:
    """The synthetic retailer (tests/synthetic.py): about 530 items, 150 customers, the 52 weeks of 2017."""
    return synthetic_retailer()


@pytest.fixture(scope="session")
def synthetic_files(synthetic: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The synthetic retailer as files for the command line: ``events``, ``catalog`` and ``mapping``."""
    return write_files(synthetic, tmp_path_factory.mktemp("synthetic-files"))


@pytest.fixture(scope="session")
def cj_small() -> Dataset:
    """A seeded sample of real Complete Journey households, with the example mapping's catalog attributes."""
    return load_completejourney(households=HOUSEHOLDS, seed=0,
                                attributes=DataMapping.from_toml(CJ_MAPPING).catalog.attributes)


@contextmanager
def _one_training_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A worker's first training compiles numba's query kernels (about 20 s on a fresh clone) unless their cache is
    written: the pytest workers of one run train their models in turn, so that one compiles and the others load its
    cache instead of compiling the same kernels at the same time."""
    lock_path = tmp_path_factory.getbasetemp().parent / "first-training.lock"  # shared by the run's workers
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session", params=[SYNTHETIC, pytest.param(COMPLETE_JOURNEY, marks=pytest.mark.realdata)])
def source(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def dataset(source: str, request: pytest.FixtureRequest) -> Dataset:
    """The data the parametrized model was trained on."""
    return request.getfixturevalue(SYNTHETIC if source == SYNTHETIC else "cj_small")


@pytest.fixture(scope="session")
def config(source: str) -> TrainConfig:
    """The training configuration of the parametrized model: the tiny one on the synthetic retailer, the
    defaults on The Complete Journey."""
    return TINY if source == SYNTHETIC else TrainConfig()


@pytest.fixture(scope="session")
def data_args(source: str, request: pytest.FixtureRequest) -> list[str]:
    """The command-line options that load the parametrized data set (evaluate, train, retrain)."""
    if source == SYNTHETIC:
        files = request.getfixturevalue("synthetic_files")
        return ["--data", str(files["events"]), "--catalog", str(files["catalog"]), "--mapping", str(files["mapping"])]
    return ["--households", str(HOUSEHOLDS), "--mapping", str(CJ_MAPPING)]


@pytest.fixture(scope="session")
def train_args(data_args: list[str], config: TrainConfig, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The command-line options that train the parametrized model: its data and its configuration."""
    path = tmp_path_factory.mktemp("config") / "config.json"
    path.write_text(config.model_dump_json())
    return [*data_args, "--config", str(path)]


@pytest.fixture(scope="session")
def trained(source: str, dataset: Dataset, config: TrainConfig, tmp_path_factory: pytest.TempPathFactory
            ) -> TrainResult:
    """The parametrized model, trained once per session: the synthetic retailer with the tiny configuration, or the
    Complete Journey slice with the defaults."""
    with _one_training_at_a_time(tmp_path_factory):
        return train(dataset, config, out_dir=tmp_path_factory.mktemp(f"models-{source}"), show_progress=False)


@pytest.fixture(scope="session")
def model_dir(trained: TrainResult) -> Path:
    return trained.model_dir


@pytest.fixture(scope="session")
def synthetic_model_dir(synthetic: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic retailer's model alone, for tests that are about a tool rather than a data source (the
    throughput benchmark), so that ``-m slow`` does not also run them on the Complete Journey."""
    with _one_training_at_a_time(tmp_path_factory):
        result = train(synthetic, TINY, out_dir=tmp_path_factory.mktemp("models-synthetic-only"), show_progress=False)
    return result.model_dir


@pytest.fixture()
def engine(model_dir: Path) -> SubstituteEngine:
    """A fresh engine per test, so inventory changes never leak between tests."""
    return SubstituteEngine.load(model_dir)
