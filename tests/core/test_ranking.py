"""Contract of the two-stage scorer (recsys.query.ranking) on the session's model (the synthetic retailer's
in the fast tier, The Complete Journey slice's in the real-data tier)."""

from pathlib import Path

import lightgbm
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recsys import ArtifactError, Dataset, SubstituteEngine
from recsys.domain.schema import PURCHASE_TYPES
from recsys.model.data import RERANKER_FILE
from recsys.model.manifest import RankerSection
from recsys.query.kernels import FEATURES, best_positions
from recsys.query.ranking import Scorer
from tests.core.served import served_scores

_OWN = FEATURES.index("own_history")


def _query_features(engine: SubstituteEngine, min_candidates: int = 40) -> np.ndarray:
    """Feature rows of a personal query with many candidates, some bought before by the customer."""
    counts = engine.model.customer_count
    for row in range(len(engine.model.customers)):
        for x in counts.indices[counts.indptr[row]:counts.indptr[row + 1]].tolist():
            _, features, _ = engine.candidates(x, row)
            if len(features) >= min_candidates and (features[:, _OWN] > 0).any():
                return features
    raise AssertionError("no personal query with enough candidates in the slice")


def test_trained_model_carries_a_checksummed_reranker(engine: SubstituteEngine, dataset: Dataset) -> None:
    ranker = engine.manifest.ranker
    assert ranker.source == "learned" and ranker.reranker.file == RERANKER_FILE
    assert RERANKER_FILE in engine.manifest.files
    assert engine.scorer.trees is not None and engine.scorer.trees.num_features == len(FEATURES)
    searched = ranker.reranker.bias_search
    assert searched and str(ranker.reranker.new_item_bias) == max(searched, key=lambda b: searched[b])
    # features without a signal in the data keep their default weights: there is no substitution feedback, and
    # views only where the data has browse events (the Complete Journey holds purchases only)
    fixed = ranker.reranker.fixed_weights
    assert {"accepted_instead", "own_accepted"} <= set(fixed)
    assert ("viewed_together" in fixed) == (not (dataset.events["event_type"] == "view").any())
    assert "popularity" not in fixed


def test_compiled_trees_score_as_lightgbm(engine: SubstituteEngine) -> None:
    """The query path walks the re-ranker's trees itself; LightGBM, which trained them, must agree."""
    features = _query_features(engine).astype(np.float64)
    booster = lightgbm.Booster(model_str=engine.model.reranker)
    expected = booster.predict(features, raw_score=True)
    assert np.ptp(expected) > 0.1, "a query's rows get different tree scores"
    np.testing.assert_allclose(engine.scorer.trees.predict(features), expected, rtol=0, atol=1e-9)


def test_reranker_scores_exactly_the_linear_shortlist(engine: SubstituteEngine) -> None:
    features = _query_features(engine)
    scorer = engine.scorer
    linear = scorer.linear(features)
    everything = served_scores(scorer, features)
    passing = linear >= scorer.min_score
    assert passing.sum() > 10 and (np.isfinite(everything) == passing).all(), "the cut-off is on the linear score"
    shortlisted = served_scores(scorer, features, shortlist=10)
    kept = np.flatnonzero(np.isfinite(shortlisted))
    assert len(kept) == 10 and linear[kept].min() >= np.delete(linear, kept).max()
    np.testing.assert_allclose(shortlisted[kept], everything[kept], rtol=1e-6)
    # the trees do reorder: the final order is not the linear one
    order = np.argsort(-everything[passing], kind="stable")
    assert not np.array_equal(order, np.argsort(-linear[passing], kind="stable"))
    assert np.array_equal(np.isfinite(served_scores(scorer, features, rerank=False)), passing)


def test_linear_score_is_the_documented_sum(engine: SubstituteEngine) -> None:
    """features @ weights, plus features @ history_weights + history_bias where the customer bought the item."""
    features = _query_features(engine)
    scorer = engine.scorer
    assert scorer.history_weights.any(), "the trained ranker has history weights"
    bought = features[:, _OWN] > 0
    rows = features.astype(np.float64)
    expected = rows @ scorer.weights + bought * (rows @ scorer.history_weights + scorer.history_bias)
    np.testing.assert_allclose(scorer.linear(features), expected, rtol=1e-6, atol=1e-6)


@given(st.lists(st.sampled_from([0.0, -0.0, 0.5, 1.0, 2.0, np.inf, -np.inf, np.nan]), max_size=150),
       st.integers(1, 100))
def test_best_takes_the_largest_finite_scores_ties_by_position(values: list[float], k: int) -> None:
    """Both ways (a sorted buffer for k up to 64, a stable sort beyond) against a sorted reference."""
    expected = sorted((i for i, v in enumerate(values) if v > -np.inf), key=lambda i: (-values[i], i))[:k]
    assert best_positions(np.asarray(values), k).tolist() == expected


def test_new_item_bias_and_fixed_weights_add_to_the_tree_score(engine: SubstituteEngine) -> None:
    features = _query_features(engine)
    section, text = engine.manifest.ranker, engine.model.reranker
    assert section.reranker is not None

    def with_reranker(new_item_bias: float, fixed_weights: dict[str, float]) -> RankerSection:
        rerank = section.reranker.model_copy(update={"new_item_bias": new_item_bias, "fixed_weights": fixed_weights})
        return section.model_copy(update={"reranker": rerank})

    base = served_scores(Scorer(with_reranker(0.0, {}), text), features)
    biased = Scorer(with_reranker(1.5, {"accepted_instead": 4.0}), text)
    accepted = features.copy()
    accepted[:, FEATURES.index("accepted_instead")] = 0.5
    new = features[:, _OWN] <= 0
    shown = np.isfinite(base)
    np.testing.assert_allclose(served_scores(biased, features)[shown] - base[shown], np.where(new, 1.5, 0.0)[shown],
                               atol=1e-6)
    # the trees never split on a feature that was 0 in validation, so feedback acts only through its weight
    # (the linear stage weighs it too, so more rows pass the cut-off: compare the rows shown both times)
    np.testing.assert_allclose(served_scores(biased, accepted)[shown] - served_scores(biased, features)[shown], 2.0,
                               atol=1e-6)


def test_a_reranker_must_come_with_its_model(engine: SubstituteEngine, model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model text is missing"):
        Scorer(engine.manifest.ranker, "")
    copy = tmp_path / "model"
    copy.mkdir()
    for path in model_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / RERANKER_FILE).unlink()
    with pytest.raises(ArtifactError, match=RERANKER_FILE):
        SubstituteEngine.load(copy)


def test_trial_and_launch_features_come_from_the_data(engine: SubstituteEngine, dataset: Dataset) -> None:
    items = engine.model.items
    sold = items["n_customers"].to_numpy() > 0  # any event: a purchase, or a view or cart
    events = dataset.events
    bought = items["item_id"].isin(events.loc[events["event_type"].isin(PURCHASE_TYPES), "item_id"]).to_numpy()
    assert (items.loc[bought, "trial_trend"] > 0).all() and (items.loc[~bought, "trial_trend"] == 0).all()
    days = items["days_on_sale"].to_numpy()
    assert np.isnan(days[~sold]).all() and (days[sold] >= 0).all() and days[sold].max() < 366
    features = _query_features(engine)
    for name in ("trial_trend", "launch_recency"):
        column = features[:, FEATURES.index(name)]
        assert column.min() >= 0 and column.max() <= 1 and column.max() > 0
