"""Contract of the re-ranker's tree scorer (recsys.query.trees): LightGBM's raw scores, on any model it accepts."""

import lightgbm
import numpy as np
import pytest

from recsys.query.trees import MAX_LEAVES, Forest


def _booster(leaves: int, seed: int = 0, **params: object) -> tuple[lightgbm.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.random((2000, 6))
    features[:, 1] = rng.integers(0, 3, 2000)  # few distinct values: rows that sit exactly on thresholds
    target = np.sin(6 * features[:, 0]) + features[:, 1] * features[:, 2] + rng.normal(0, 0.1, 2000)
    booster = lightgbm.train({"objective": "regression", "num_leaves": leaves, "min_data_in_leaf": 5,
                              "verbose": -1, "seed": seed, **params},
                             lightgbm.Dataset(features, target), num_boost_round=30)
    return booster, features


@pytest.mark.parametrize("leaves", [2, 7, MAX_LEAVES])
def test_scores_are_lightgbms_raw_scores(leaves: int) -> None:
    booster, features = _booster(leaves)
    forest = Forest.from_lightgbm(booster.model_to_string())
    thresholds = np.unique(forest.arrays.threshold)
    rng = np.random.default_rng(1)
    on_thresholds = rng.choice(thresholds, size=(500, features.shape[1]))  # every comparison an exact tie
    with_nan = features[:500].copy()
    with_nan[rng.random(with_nan.shape) < 0.2] = np.nan  # LightGBM reads NaN as 0 in these trees
    for rows in (features, on_thresholds, with_nan, features * 1.5 - 0.25):  # the last: outside the training range
        expected = booster.predict(rows, raw_score=True)
        assert np.ptp(expected) > 0
        np.testing.assert_array_equal(forest.predict(rows), expected)


def test_single_leaf_trees_add_their_value() -> None:
    booster, features = _booster(7, min_data_in_leaf=5000)  # no split is allowed: each tree is one leaf
    forest = Forest.from_lightgbm(booster.model_to_string())
    assert len(forest.arrays.threshold) == 0
    np.testing.assert_array_equal(forest.predict(features[:10]), booster.predict(features[:10], raw_score=True))


def test_refuses_what_it_cannot_score_exactly() -> None:
    too_big, _ = _booster(MAX_LEAVES + 1)
    with pytest.raises(ValueError, match="leaves"):
        Forest.from_lightgbm(too_big.model_to_string())
    rng = np.random.default_rng(0)
    features = rng.random((500, 3))
    features[rng.random(500) < 0.3, 0] = np.nan  # NaN seen in training: splits with a missing-value type
    with_missing = lightgbm.train({"objective": "regression", "verbose": -1, "min_data_in_leaf": 5},
                                  lightgbm.Dataset(features, np.nan_to_num(features[:, 0]) + features[:, 1]),
                                  num_boost_round=3)
    with pytest.raises(ValueError, match="missing-value"):
        Forest.from_lightgbm(with_missing.model_to_string())
    forest = Forest.from_lightgbm(_booster(7)[0].model_to_string())
    with pytest.raises(ValueError, match="6 features"):
        forest.predict(np.zeros((2, 5)))
