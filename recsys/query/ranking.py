"""The scorer that combines a candidate's ranking features, and the features' default weights.

Every candidate of a query gets one row of :class:`recsys.query.kernels.Feature`, each scaled to roughly [0, 1]
(``widened`` is an indicator). Scoring has two stages:

1. A piecewise-linear score shortlists the candidates: ``features @ weights``, plus ``features @
   history_weights + history_bias`` for candidates the customer bought before (what makes a good substitute
   differs between a shopper's own items and items new to them). Default weights are set by hand; a trained
   model carries weights learned on validation data in its manifest (``ranker``).
2. A trained model may also carry a re-ranker: gradient-boosted trees (LightGBM lambdarank, stored as
   LightGBM's text model, no pickle) that score the shortlist. Trees learn what one weight per feature cannot
   ("this customer varies in this group, so a popular new item beats their second-favourite"). The final
   score adds ``new_item_bias`` for candidates the customer never bought (chosen on validation queries, it
   trades "offer what they buy" against "offer something new") and the default weights of features the
   validation data never showed (substitution feedback, views in a purchase-only log), so those still act.
   At load the trees are arranged for QuickScorer and scored by compiled code (:class:`recsys.query.trees.Forest`):
   LightGBM's results on a 40-row shortlist at a small fraction of ``lightgbm.Booster.predict``'s cost.
   Even so the trees cost the most per row of anything on the query path, hence the shortlist: re-ranking
   the linear top 20-50 measured the same hit rates as re-ranking every candidate.

The score cut-off (``min_score``) applies to the linear score: it decides what may be shown at all (99% of
the validation switches pass it), the trees only order what passes.
"""

from __future__ import annotations

import copy
from typing import Final

import numpy as np

from recsys.model.manifest import RankerSection
from recsys.query.kernels import FEATURES, Feature, ScorerArrays, linear_scores, plain
from recsys.query.trees import Forest

DEFAULT_WEIGHTS: Final[dict[str, float]] = {
    "similarity": 1.0,
    "bought_instead": 2.0,
    "viewed_together": 1.0,
    "switched_to": 1.0,
    "tried": 1.0,
    "popularity": 0.8,
    "trend": 0.5,
    "store_popularity": 0.5,
    "size_match": 0.5,
    "price_match": 0.5,
    "same_brand": 0.2,
    "same_private_label": 0.1,
    "own_history": 1.5,
    "own_share": 1.0,
    "own_count": 0.0,
    "own_recent": 0.0,
    "own_loyal": 0.0,
    "own_trend": 0.0,
    "variety_new": 0.5,
    "brand_affinity": 1.0,
    "size_affinity": 0.3,
    "price_affinity": 0.3,
    "widened": -1.0,
    # feedback is rare in any validation period, so these weights are set, not learned: an accepted
    # substitution outranks every behavioural signal, repeated rejections push the pair below the cut-off
    "accepted_instead": 4.0,
    "own_accepted": 6.0,
    "trial_trend": 0.5,
    "launch_recency": 0.2,
}


#: the familiar intent's shift of the final score of candidates the customer never bought, for a model whose
#: manifest has none (trained before the intents): on The Complete Journey's default split, -1 took all-queries
#: HR@3 from 0.581 (balanced) to 0.607; -0.5 and -2 gave 0.602 and 0.605
DEFAULT_FAMILIAR_SHIFT: Final[float] = -1.0


def weight_vector(weights: dict[str, float] | None = None, defaults: dict[str, float] | None = None
                  ) -> np.ndarray:
    """Weights in :data:`FEATURES` order; names missing from ``weights`` take their default."""
    merged = {**(DEFAULT_WEIGHTS if defaults is None else defaults), **(weights or {})}
    unknown = set(merged) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown ranking features: {sorted(unknown)}")
    return np.asarray([merged[name] for name in FEATURES], dtype=np.float32)


class Scorer:
    """Scores feature rows with a manifest's ``ranker`` section and, when given, its re-ranker's text model."""

    def __init__(self, ranker: RankerSection | None = None, reranker: str = "") -> None:
        ranker = ranker or RankerSection()
        self.weights = weight_vector(ranker.weights)
        # a model without history weights scores bought-before rows like the others: zero weights, zero bias
        self.history_weights = weight_vector(ranker.history_weights or {}, defaults=dict.fromkeys(FEATURES, 0.0))
        self.history_bias = ranker.history_bias
        # the cut-off is on the linear score: it decides what may be shown, the re-ranker only orders it
        self.min_score = -np.inf if ranker.min_score is None else ranker.min_score
        rerank = ranker.reranker
        if rerank is not None and not reranker:
            raise ValueError("the ranker names a re-ranker but its model text is missing")
        self.trees = Forest.from_lightgbm(reranker) if rerank is not None else None
        if self.trees is not None and self.trees.num_features != len(FEATURES):
            raise ValueError(f"the re-ranker takes {self.trees.num_features} features, this build has "
                             f"{len(FEATURES)}")
        self.new_item_bias = rerank.new_item_bias if rerank is not None else 0.0
        self.fixed_weights = weight_vector(rerank.fixed_weights if rerank is not None else None,
                                           defaults=dict.fromkeys(FEATURES, 0.0))
        self.arrays = plain(ScorerArrays(
            self.weights.astype(np.float64), self.history_weights.astype(np.float64), self.history_bias,
            self.min_score, self.new_item_bias, self.fixed_weights.astype(np.float64),
            (self.trees or Forest.empty(len(FEATURES))).arrays, 0.0,
        ))
        """What the scoring kernels read: a :class:`recsys.query.kernels.ScorerArrays`, as a plain tuple."""

    def shifted(self, new_item_shift: float) -> Scorer:
        """This scorer, its trees shared, with ``new_item_shift`` added to the final score of candidates the
        customer never bought, after the cut-off and the shortlist are decided (an intent's way of ordering,
        see :class:`recsys.domain.types.Intent`)."""
        other = copy.copy(self)
        other.arrays = plain(ScorerArrays(*self.arrays)._replace(new_item_shift=float(new_item_shift)))
        return other

    def linear(self, features: np.ndarray) -> np.ndarray:
        """Stage 1: the piecewise-linear score (float64)."""
        return linear_scores(features, self.arrays)

    @staticmethod
    def design(features: np.ndarray) -> np.ndarray:
        """The fit's design matrix: features, features of bought-before candidates, bought-before indicator."""
        bought = (features[:, Feature.own_history] > 0).astype(features.dtype)[:, None]
        return np.hstack([features, features * bought, bought])

    @staticmethod
    def from_vector(vector: np.ndarray) -> RankerSection:
        """A manifest ``ranker`` section from a fitted vector over :meth:`design`'s columns."""
        n = len(FEATURES)
        return RankerSection(
            weights={f: round(float(v), 5) for f, v in zip(FEATURES, vector[:n], strict=True)},
            history_weights={f: round(float(v), 5) for f, v in zip(FEATURES, vector[n:2 * n], strict=True)},
            history_bias=round(float(vector[2 * n]), 5))
