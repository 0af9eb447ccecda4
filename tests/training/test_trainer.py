import json
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recsys import AvailabilityPolicy, Dataset, DataValidationError, SubstituteEngine
from recsys.cli import app
from recsys.domain.config import TrainConfig
from recsys.model.artifact import CURRENT, MANIFEST, read_manifest
from recsys.model.data import ModelData
from training.loaders import read_event_log
from training.pipeline import TrainResult, fit_model, save_model, train


def test_trains_a_complete_versioned_artifact(trained: TrainResult, dataset: Dataset, config: TrainConfig) -> None:
    model_dir = trained.model_dir
    manifest = read_manifest(model_dir)  # verifies every checksum
    assert (model_dir.parent / CURRENT).resolve() == model_dir.resolve()
    assert set(manifest.files) == {p.name for p in model_dir.iterdir()} - {MANIFEST}
    assert manifest.counts["customers"] == dataset.events["customer_id"].nunique()
    assert manifest.counts["events"] == len(dataset.events) - manifest.sources[-1].rows_read \
        + manifest.sources[-1].rows_used
    assert manifest.size_parse_rate > 0.9
    assert manifest.config == config and manifest.engine == "pandas"
    assert set(trained.stage_seconds) >= {"validate", "catalog", "embeddings", "neighbours", "index", "write"}
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".tmp")]


def test_report_with_held_out_metrics_loss_coverage_and_examples(trained: TrainResult) -> None:
    model_dir, manifest = trained.model_dir, trained.manifest
    assert {"report.md", "report-als-loss.png", "report-holdout.png"} <= set(manifest.files)  # checksummed
    for plot in ("report-als-loss.png", "report-holdout.png"):
        assert (model_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    losses = manifest.als_loss
    assert len(losses) == manifest.config.als.iterations and losses[-1] < losses[0]
    metrics = manifest.metrics
    assert set(metrics["methods"]) == {"ours", "ours-familiar", "ours-discover", "default-weights",
                                       "random-in-group", "popular-in-group",
                                       "history-then-popular", "cooccurrence-in-group", "implicit-similar-raw",
                                       "implicit-in-group"}
    fitted = manifest.ranker.validation["queries"]
    assert metrics["queries"]["all"] > 0.1 * fitted, "about a fifth of the validation queries are held out"
    ours = metrics["methods"]["ours"]["all"]
    assert ours["HR@3"] > 2 * metrics["methods"]["random-in-group"]["all"]["HR@3"]
    assert 0 <= ours["HR@1"] <= ours["HR@3"] <= ours["HR@10"] <= 1
    cover = [manifest.coverage[f"at_least_{k}"] for k in (1, 3, 5, 10)]
    with_events = manifest.counts["items_with_events"]
    assert manifest.coverage["items_sampled"] == min(2000, with_events)
    assert cover == sorted(cover, reverse=True) and cover[0] > 0.9
    report = (model_dir / "report.md").read_text()
    assert f"# Model {manifest.version}" in report and "history-then-popular" in report
    assert f"{ours['HR@3']:.3f}" in report and "## Example answers" in report and "for customer" in report


def test_groups_are_contiguous_and_embeddings_normalised(model_dir: Path) -> None:
    model = ModelData.load(model_dir)
    keys = model.items[["department", "category", "product_type"]].apply(tuple, axis=1)
    groups = len(model.group_ptr) - 1
    for g in np.random.default_rng(0).choice(groups, min(50, groups), replace=False):
        lo, hi = model.group_ptr[g], model.group_ptr[g + 1]
        assert keys.iloc[lo:hi].nunique() == 1
        if hi < len(keys):
            assert keys.iloc[hi] != keys.iloc[lo]
    norms = np.linalg.norm(model.factors, axis=1)
    has_events = model.items["n_customers"].to_numpy() > 0
    assert np.allclose(norms[has_events], 1.0, atol=1e-4)
    # items without events: the mean direction of their brand's items with events in their group, else the
    # group's, else zero (cold start from metadata)
    items = model.items.assign(warm=has_events, group=model.group_of)
    warm_groups = set(items.loc[has_events, "group"])
    cold = items[~has_events]
    assert np.allclose(norms[cold.index[cold["group"].isin(warm_groups)]], 1.0, atol=1e-4)
    assert np.all(norms[cold.index[~cold["group"].isin(warm_groups)]] == 0)
    checked = 0
    for i in cold.index[:300]:
        peers = items[has_events & (items["group"] == items.at[i, "group"]) & (items["brand"] == items.at[i, "brand"])]
        if len(peers):
            mean = model.factors[peers.index].sum(axis=0)
            assert np.allclose(model.factors[i], mean / np.linalg.norm(mean), atol=1e-4)
            checked += 1
    assert checked > 20
    # the bought-instead signal only links items of the same group
    coo = model.bought_instead.tocoo()
    assert coo.nnz > 0 and np.all(model.group_of[coo.row] == model.group_of[coo.col])


def test_bias_is_chosen_on_held_out_queries_topped_up_from_the_unsampled(dataset: Dataset, config: TrainConfig,
                                                                        tmp_path: Path) -> None:
    ranker = config.ranker.model_copy(update={"max_queries": 400, "selection_queries": 300, "gbdt_trees": 5})
    manifest = train(dataset, config.model_copy(update={"ranker": ranker}), out_dir=tmp_path,
                     show_progress=False).manifest
    fitted, held_out = manifest.ranker.validation["queries"], manifest.metrics["queries"]["all"]
    assert 0.7 * 400 < fitted < 0.9 * 400, "the fit keeps about 80% of its sample"
    assert held_out == 300, "the sample's held-out fifth is topped up to selection_queries"
    assert set(manifest.ranker.reranker.bias_search) == {"0.0", "0.125", "0.25", "0.375", "0.5", "0.75"}


def test_train_until_drops_later_events(dataset: Dataset, config: TrainConfig, tmp_path: Path) -> None:
    until = datetime(2017, 6, 30)
    result = train(dataset, config, out_dir=tmp_path, train_until=until, show_progress=False)
    span_end = pd.Timestamp(result.manifest.data_span.end)
    assert span_end <= pd.Timestamp(until)
    events = dataset.events
    # a later row is counted as later, duplicate or not: the trainer checks --train-until before duplicates
    later = int(((events["timestamp"] > pd.Timestamp(until)) & events["item_id"].isin(dataset.catalog["item_id"])
                 ).sum())
    assert result.manifest.sources[-1].skipped["after --train-until"] == later


def test_trains_on_browse_events_with_coviews(rees46_path: Path, tmp_path: Path) -> None:
    data = read_event_log(rees46_path, known_event_types={"view", "cart", "purchase"})
    result = train(data, out_dir=tmp_path, show_progress=False)
    assert result.manifest.counts["viewed_together_pairs"] > 0
    assert result.manifest.size_parse_rate is None
    engine = SubstituteEngine.load(result.model_dir)
    model = engine.model
    i = int(model.viewed_together.tocoo().row[0])
    answer = engine.substitutes(str(model.items["item_id"].iloc[i]), k=5)
    assert len(answer) >= 1
    assert any("often viewed together" in s.reasons for s in answer)


def test_no_usable_rows_fails_clearly(rees46_path: Path, tmp_path: Path) -> None:
    data = read_event_log(rees46_path)
    with pytest.raises(DataValidationError, match="no usable events"):
        train(data, out_dir=tmp_path, train_until=datetime(2000, 1, 1), show_progress=False)
    assert not (tmp_path / CURRENT).exists()


def test_cli_trains_and_prints_model_path_last(rees46_path: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(rees46_path), "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert Path(last).resolve() == (tmp_path / CURRENT).resolve()
    manifest = read_manifest(Path(last))
    duplicates = int(pd.read_csv(rees46_path).duplicated().sum())
    assert duplicates > 0 and manifest.sources[-1].skipped == {"duplicate row": duplicates}
    assert manifest.counts["events"] == 17_435 - duplicates


def test_cli_reports_missing_columns_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text("a,b\n1,2\n")
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "log.csv"), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "missing required column(s) user_id, product_id, event_time" in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not os.path.exists(tmp_path / CURRENT)


def test_trainer_counts_what_it_cannot_use(rees46_path: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(rees46_path, dtype=str)
    frame.loc[0:9, "event_time"] = "2099-01-01 00:00:00 UTC"  # clock error at the source
    frame.loc[10:14, "price"] = "twelve"  # wrong type
    frame.loc[15:19, "event_type"] = "teleport"
    frame = pd.concat([frame, frame.iloc[100:110]])  # duplicated rows
    frame.to_csv(tmp_path / "log.csv", index=False)
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "log.csv"), "--out", str(tmp_path / "m"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    loader, trainer = json.loads((tmp_path / "m" / "current" / MANIFEST).read_text())["sources"]
    assert loader["skipped"] == {"unparseable price": 5, "unknown event type": 5}
    assert trainer["skipped"]["timestamp in the future"] == 10
    assert trainer["skipped"]["duplicate row"] >= 10


def test_empty_file_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "empty.csv"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read" in result.output and "Traceback" not in result.output
    (tmp_path / "header.csv").write_text("user_id,product_id,event_time\n")
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "header.csv"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no usable events" in result.output


def test_fitting_writes_nothing_and_the_saved_model_answers_as_the_fitted_one(dataset: Dataset, config: TrainConfig,
                                                                            tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """fit_model trains in memory, the ranker's inner model too (no model is written, or loaded, on the way);
    save_model writes it; the loaded model answers exactly as the one in memory."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("fit_model wrote or read a model")

    with monkeypatch.context() as patch:
        patch.setattr(ModelData, "save", refuse)
        patch.setattr(ModelData, "load", refuse)
        fitted = fit_model(dataset, config, show_progress=False)
    assert fitted.manifest.ranker.source == "learned"
    in_memory = fitted.engine()
    in_memory.use_policy(AvailabilityPolicy())  # as served: the saved model's assortment must answer the same
    saved = save_model(fitted, tmp_path / "models", with_report=False)
    assert (tmp_path / "models" / CURRENT).resolve() == saved.model_dir.resolve()
    loaded = SubstituteEngine.load(saved.model_dir)
    items = loaded.model.items
    customers = loaded.model.customers
    for i, item_id in enumerate(items.loc[items["n_customers"] > 0, "item_id"].sample(100, random_state=0)):
        customer = str(customers[i % len(customers)]) if i % 3 else None
        assert in_memory.substitutes(item_id, customer, k=5) == loaded.substitutes(item_id, customer, k=5)
