"""`recsys retrain`: the quality gate promotes an equally good model and refuses a deliberately worse one, judging
on the purchases of a bounded customer sample."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from recsys import Dataset, TrainConfig
from recsys.cli import app
from recsys.domain.schema import PURCHASE_TYPES
from recsys.model.artifact import CURRENT
from recsys.model.registry import HEADLINE_METRICS, current_version
from tests.synthetic import TINY
from training.nightly import GateConfig, gate_sample
from training.nightly import retrain as run_retrain


def worse(config: TrainConfig) -> TrainConfig:
    """A plausible config mistake: 2-dimensional embeddings, one ALS pass, hand-set weights, 10 candidates."""
    return config.model_copy(update={"ranker": config.ranker.model_copy(update={"enabled": False}),
                                     "als": config.als.model_copy(update={"factors": 2, "iterations": 1}),
                                     "max_candidates": 10})


@pytest.fixture()
def models(model_dir: Path, tmp_path: Path) -> Path:
    """A models directory whose current model is the session's (trained on the data ``data_args`` loads)."""
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(model_dir, root / model_dir.name)
    (root / CURRENT).symlink_to(model_dir.name)
    return root


def retrain(models: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["retrain", "--models", str(models), "--no-progress", *args])
    return result.exit_code, result.output


def log(models: Path) -> list[dict]:
    return [json.loads(line) for line in (models / "retrain.jsonl").read_text().splitlines()]


def test_gate_refuses_a_worse_model_and_keeps_the_current_one(models: Path, data_args: list[str],
                                                              config: TrainConfig, tmp_path: Path) -> None:
    before = current_version(models)
    path = tmp_path / "worse.json"
    path.write_text(worse(config).model_dump_json())
    code, output = retrain(models, *data_args, "--config", str(path))
    assert code == 1, output
    assert "refused: HR@1" in output and " HR@3 " in output
    assert current_version(models) == before
    (entry,) = log(models)
    assert entry["promoted"] is False and entry["current"] == before
    candidate = entry["candidate"]
    assert (models / candidate).is_dir() and candidate != before
    assert entry["metrics"][candidate]["HR@3"] < entry["metrics"][before]["HR@3"] - 0.01
    assert entry["queries"][candidate]["all"] >= 100


def test_gate_promotes_an_equally_good_model(models: Path, train_args: list[str]) -> None:
    before = current_version(models)
    code, output = retrain(models, *train_args, "--max-drop", "0.01")
    assert code == 0, output
    (entry,) = log(models)
    assert entry["promoted"] is True and current_version(models) == entry["candidate"] != before
    # every intent is gated: each headline metric of each intent, HR@1 included
    assert set(entry["metrics"][entry["candidate"]]) == set(entry["metrics"][before]) == set(HEADLINE_METRICS)
    assert all(abs(entry["metrics"][entry["candidate"]][m] - entry["metrics"][before][m]) <= 0.01
               for m in HEADLINE_METRICS)
    assert "familiar HR@3" in output and "discover new HR@3" in output
    # discover is judged as of the hold-out's start: the hold-out's purchases are what it is asked to find
    assert entry["metrics"][before]["discover new HR@3"] > 0.1
    report = (models / CURRENT / "report.md").read_text()
    assert f"Previous: {before}" in report, "the new model's report compares it with the one it replaces"
    # the catalog attributes came through the command line's files and mapping as the in-memory data set has them
    by_files, in_memory = (pd.read_parquet(models / version / "items.parquet").set_index("item_id")
                           for version in (CURRENT, before))
    attributes = [c for c in in_memory.columns if c.startswith("attribute.")]
    assert attributes and [c for c in by_files.columns if c.startswith("attribute.")] == attributes
    assert (by_files.loc[in_memory.index, attributes].astype("string").fillna("")
            == in_memory[attributes].astype("string").fillna("")).all().all()
    assert "## Catalog attributes kept by switches" in report


def test_first_model_is_promoted_without_a_gate(rees46_path: Path, tmp_path: Path) -> None:
    models = tmp_path / "fresh"
    result = CliRunner().invoke(app, ["retrain", "--models", str(models), "--data", str(rees46_path),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "no current model" in result.output
    assert current_version(models) == log(models)[0]["candidate"]


def test_the_gate_reads_the_purchases_of_a_bounded_seeded_customer_sample(synthetic: Dataset) -> None:
    events = synthetic.events
    purchases = events[events["event_type"].isin(list(PURCHASE_TYPES))]
    gate = GateConfig(max_customers=40)
    sample = gate_sample(events, gate)
    chosen = set(sample["customer_id"])
    assert len(chosen) == 40 < purchases["customer_id"].nunique()
    # every purchase of each customer drawn, and nothing else: their histories and switches are whole
    pd.testing.assert_frame_equal(sample, purchases[purchases["customer_id"].isin(chosen)])
    assert set(gate_sample(events, gate)["customer_id"]) == chosen
    assert set(gate_sample(events, gate.model_copy(update={"seed": 1}))["customer_id"]) != chosen
    pd.testing.assert_frame_equal(gate_sample(events, GateConfig()), purchases)  # fewer customers than the bound


def test_the_gate_judges_on_at_most_its_bounds(synthetic: Dataset, synthetic_model_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copytree(synthetic_model_dir, models / synthetic_model_dir.name)
    (models / CURRENT).symlink_to(synthetic_model_dir.name)
    gate = GateConfig(max_customers=60, max_queries=150, min_queries=1, max_drop=1.0)
    result = run_retrain(synthetic, models, TINY, gate, show_progress=False)
    assert result.promoted and result.sample_customers == 60
    assert result.queries[result.candidate] == result.queries[synthetic_model_dir.name]
    assert 0 < result.queries[result.candidate]["all"] <= 150
    assert log(models)[0]["sample_customers"] == 60
