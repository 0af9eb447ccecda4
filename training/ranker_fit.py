"""Learn the ranking on a validation period that ends before any data used to test.

The trainer holds out the last ``validation_weeks`` of its own data: it fits an inner model on the data before,
builds switch queries (see :mod:`training.evaluation`) from the held-out weeks and computes the engine's
features for every candidate of each query. On those lists it fits

- the piecewise-linear weights (stage 1, see ``recsys.query.ranking``) by listwise softmax cross-entropy (the
  probability mass on the items the customer actually switched to), L2-regularised, with L-BFGS;
- the re-ranker (stage 2): LightGBM lambdarank trees on the same features and lists.

The score cut-off, on the linear score, is set so that 99% of the validation switches score above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import lightgbm
import numpy as np
from scipy.optimize import minimize

from recsys.domain.config import RankerConfig
from recsys.model.manifest import RankerSection
from recsys.query.engine import SubstituteEngine
from recsys.query.kernels import FEATURES
from recsys.query.ranking import DEFAULT_WEIGHTS, Scorer

#: the re-ranker's new-item biases tried on the held-out validation queries
NEW_ITEM_BIASES: Final[tuple[float, ...]] = (0.0, 0.125, 0.25, 0.375, 0.5, 0.75)
#: the familiar intent's shifts of never-bought candidates' scores tried on the held-out validation queries
FAMILIAR_SHIFTS: Final[tuple[float, ...]] = (-0.25, -0.5, -1.0, -2.0, -4.0)


@dataclass
class RankerFit:
    ranker: RankerSection  # the manifest's ``ranker`` section: weights, history weights and bias
    min_score: float
    queries: int
    candidates: int
    loss: float


def collect(engine: SubstituteEngine, xs: np.ndarray, customers: np.ndarray, relevant: list[np.ndarray]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked features, labels and query start offsets for the queries that have a relevant candidate.

    A query may be given twice (once with all its Ys, once with only the Ys new to the customer), which
    weighs "offer something new" against "offer what they already buy" in the fit.
    """
    blocks, labels, starts = [], [], [0]
    for x, customer, rel in zip(xs.tolist(), customers.tolist(), relevant, strict=True):
        candidates, features, _ = engine.candidates(x, customer if customer >= 0 else None)
        label = np.isin(candidates, rel)
        if not label.any() or label.all():
            continue  # carries no ranking information
        blocks.append(features)
        labels.append(label)
        starts.append(starts[-1] + len(label))
    if not blocks:
        raise ValueError("no validation query has a relevant candidate")
    return np.vstack(blocks).astype(np.float64), np.concatenate(labels), np.asarray(starts[:-1])


def fit(raw_features: np.ndarray, labels: np.ndarray, starts: np.ndarray, l2: float = 1e-3) -> RankerFit:
    """Listwise softmax: maximise log( sum of softmax(score) over each query's relevant candidates )."""
    features = Scorer.design(raw_features)
    n_queries = len(starts)
    query_of = np.repeat(np.arange(n_queries), np.diff(np.append(starts, len(labels))))

    def loss_and_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        scores = features @ w
        peak = np.maximum.reduceat(scores, starts)[query_of]
        exp = np.exp(scores - peak)
        total = np.add.reduceat(exp, starts)
        rel_total = np.add.reduceat(exp * labels, starts)
        loss = -np.sum(np.log(rel_total) - np.log(total)) / n_queries + l2 * w @ w
        # d/dw: sum over all of p_i x_i - sum over relevant of q_i x_i, per query
        p = exp / total[query_of]
        q = np.where(labels, exp / rel_total[query_of], 0.0)
        grad = features.T @ (p - q) / n_queries + 2 * l2 * w
        return float(loss), grad

    result = minimize(loss_and_grad, np.zeros(features.shape[1]), jac=True, method="L-BFGS-B")
    ranker = Scorer.from_vector(result.x)
    # a feature that is 0 on every validation candidate (e.g. substitution feedback, views in a purchase-only
    # period) carries no evidence: it keeps its default weight rather than the prior's 0
    weights = ranker.weights
    assert weights is not None
    for name in np.asarray(FEATURES)[~raw_features.any(axis=0)].tolist():
        weights[name] = DEFAULT_WEIGHTS[name]
    relevant_scores = Scorer(ranker).linear(raw_features)[labels]
    return RankerFit(
        ranker=ranker,
        min_score=float(np.quantile(relevant_scores, 0.01)),
        queries=n_queries, candidates=len(labels), loss=float(result.fun),
    )


def fit_reranker(raw_features: np.ndarray, labels: np.ndarray, starts: np.ndarray, config: RankerConfig
                 ) -> tuple[str, dict[str, float]]:
    """LightGBM lambdarank trees on the lists of :func:`collect`: the model text, and the default weights of
    the features that are 0 on every candidate (no tree can split on them; see ``recsys.query.ranking``)."""
    params = {
        "objective": "lambdarank", "num_leaves": config.gbdt_leaves, "learning_rate": config.gbdt_learning_rate,
        "min_data_in_leaf": 50, "lambdarank_truncation_level": 10, "seed": config.seed,
        "deterministic": True, "force_row_wise": True, "verbose": -1,
    }
    data = lightgbm.Dataset(raw_features, labels.astype(np.int32), group=np.diff(np.append(starts, len(labels))),
                            feature_name=list(FEATURES))
    booster = lightgbm.train(params, data, num_boost_round=config.gbdt_trees)
    unobserved = np.asarray(FEATURES)[~raw_features.any(axis=0)].tolist()
    return booster.model_to_string(), {name: DEFAULT_WEIGHTS[name] for name in unobserved}
