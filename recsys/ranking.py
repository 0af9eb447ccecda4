"""The ranking features and the scorer that combines them.

Every candidate of a query gets one row of :data:`FEATURES`, each scaled to roughly [0, 1] (``widened`` is
an indicator). Scoring has two stages:

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
   At load the trees are arranged for QuickScorer and scored by compiled code (:class:`recsys.trees.Forest`):
   LightGBM's results on a 40-row shortlist at a small fraction of ``lightgbm.Booster.predict``'s cost.
   Even so the trees cost the most per row of anything on the query path, hence the shortlist: re-ranking
   the linear top 20-50 measured the same hit rates as re-ranking every candidate.

The score cut-off (``min_score``) applies to the linear score: it decides what may be shown at all (99% of
the validation switches pass it), the trees only order what passes.
"""

from __future__ import annotations

from typing import Any, Final

import numba
import numpy as np

from recsys.trees import Forest, score_columns

FEATURES: Final[tuple[str, ...]] = (
    "similarity",        # cosine of the ALS item embeddings
    "bought_instead",    # same-group items bought by the same customers (switching)
    "viewed_together",   # same-group items viewed/carted in one session
    "switched_to",       # share of baskets without X (from customers loyal to X) that held the candidate
    "tried",             # share of customers loyal to X who also bought the candidate
    "popularity",        # distinct customers, relative to the group's most popular item
    "trend",             # recent (3-week half-life) demand, relative to the group's top
    "store_popularity",  # demand at the queried store (else the customer's usual store), relative to its top
    "size_match",        # exp(-|log size ratio|) when the unit families agree, else 0
    "price_match",       # exp(-|log price ratio|)
    "same_brand",
    "same_private_label",
    "own_history",       # the customer bought this candidate before (log count, saturating at 10)
    "own_count",         # log count relative to the customer's most-bought item in X's group
    "own_recent",        # recency-weighted purchases of the candidate, relative to the group's top
    "own_trend",         # the customer's purchases of the candidate in the last weeks (3-week half-life)
    "own_loyal",         # bought before x how loyal (not varied) the customer is in X's group
    "own_share",         # the candidate's share of the customer's purchases in X's group
    "variety_new",       # never bought by the customer x how varied the customer's purchases in X's group are
    "brand_affinity",    # the customer's share of the candidate's brand in X's category
    "size_affinity",     # closeness to the customer's usual size in the category
    "price_affinity",    # closeness to the customer's usual price level in the category
    "widened",           # candidate comes from the parent category, not X's own group
    "accepted_instead",  # substitution feedback for X -> candidate: (accepted - rejected) / (all + 1), in [-1, 1]
    "own_accepted",      # the customer accepted this candidate as a substitute before (log count, saturating at 3)
    "trial_trend",       # recent first purchases (customers trying the item), relative to the group's top
    "launch_recency",    # exp(-days since the item's first event / 30): a recent launch
)

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

    def __init__(self, ranker: dict[str, Any] | None = None, reranker: str = "") -> None:
        ranker = ranker or {}
        self.weights = weight_vector(ranker.get("weights"))
        # a model without history weights scores bought-before rows like the others: zero weights, zero bias
        self.history_weights = weight_vector(ranker.get("history_weights") or {},
                                             defaults=dict.fromkeys(FEATURES, 0.0))
        self.history_bias = float(ranker.get("history_bias", 0.0))
        # the cut-off is on the linear score: it decides what may be shown, the re-ranker only orders it
        self.min_score = float(ranker.get("min_score", -np.inf))
        rerank: dict[str, Any] = ranker.get("reranker") or {}
        if rerank and not reranker:
            raise ValueError("the ranker names a re-ranker but its model text is missing")
        self.trees = Forest.from_lightgbm(reranker) if rerank else None
        if self.trees is not None and self.trees.num_features != len(FEATURES):
            raise ValueError(f"the re-ranker takes {self.trees.num_features} features, this build has "
                             f"{len(FEATURES)}")
        self.new_item_bias = float(rerank.get("new_item_bias", 0.0))
        self.fixed_weights = weight_vector(rerank.get("fixed_weights"), defaults=dict.fromkeys(FEATURES, 0.0))
        self.kernel_arguments: tuple[Any, ...] = (
            self.weights.astype(np.float64), self.history_weights.astype(np.float64), self.history_bias,
            self.min_score, self.new_item_bias, self.fixed_weights.astype(np.float64),
            *(self.trees or Forest.empty(len(FEATURES))).arrays,
        )
        """What :func:`scores` takes after its first three arguments: for callers inside other kernels (which may
        also call its steps, :func:`linear_scores` and :func:`rescore`)."""

    def linear(self, features: np.ndarray) -> np.ndarray:
        """Stage 1: the piecewise-linear score (float64)."""
        return linear_scores(features, *self.kernel_arguments[:3])

    def __call__(self, features: np.ndarray, shortlist: int | None = None, rerank: bool = True) -> np.ndarray:
        """Scores of all rows; -inf for rows whose linear score is under the cut-off (``min_score``), which
        are never returned. With a re-ranker (and ``rerank``), the linear score keeps the best ``shortlist``
        of the other rows (all when None; ties in row order) and the re-ranker scores them; the rest get -inf
        too."""
        return scores(features, len(features) if shortlist is None else shortlist,
                      rerank and self.trees is not None, *self.kernel_arguments)

    @staticmethod
    def design(features: np.ndarray) -> np.ndarray:
        """The fit's design matrix: features, features of bought-before candidates, bought-before indicator."""
        bought = (features[:, _OWN] > 0).astype(features.dtype)[:, None]
        return np.hstack([features, features * bought, bought])

    @staticmethod
    def from_vector(vector: np.ndarray) -> dict[str, object]:
        """A manifest ``ranker`` section from a fitted vector over :meth:`design`'s columns."""
        n = len(FEATURES)
        return {"weights": {f: round(float(v), 5) for f, v in zip(FEATURES, vector[:n], strict=True)},
                "history_weights": {f: round(float(v), 5) for f, v in zip(FEATURES, vector[n:2 * n], strict=True)},
                "history_bias": round(float(vector[2 * n]), 5)}


_OWN: Final[int] = FEATURES.index("own_history")


@numba.njit(cache=True, nogil=True)
def linear_scores(features: np.ndarray, weights: np.ndarray, history_weights: np.ndarray, history_bias: float
                  ) -> np.ndarray:
    """Stage 1 per row, summed in float64: ``row @ weights``, plus ``row @ history_weights + history_bias``
    where the customer bought the candidate (``own_history`` > 0)."""
    out = np.empty(len(features))
    for i in range(len(features)):
        row = features[i]
        score = 0.0
        for j in range(len(row)):
            score += np.float64(row[j]) * weights[j]
        if row[_OWN] > 0:
            score += history_bias
            for j in range(len(row)):
                score += np.float64(row[j]) * history_weights[j]
        out[i] = score
    return out


@numba.njit(cache=True, nogil=True)
def scores(features: np.ndarray, shortlist: int, rerank: bool, weights: np.ndarray, history_weights: np.ndarray,
           history_bias: float, min_score: float, new_item_bias: float, fixed_weights: np.ndarray,
           *forest: np.ndarray) -> np.ndarray:
    """:meth:`Scorer.__call__` in one kernel; the arguments after ``rerank`` are :attr:`Scorer.kernel_arguments`."""
    linear = linear_scores(features, weights, history_weights, history_bias)
    return rescore(features, linear, np.full(len(linear), -np.inf), shortlist, rerank, min_score, new_item_bias,
                   fixed_weights, *forest)


@numba.njit(cache=True, nogil=True)
def rescore(features: np.ndarray, linear: np.ndarray, known: np.ndarray, shortlist: int, rerank: bool,
            min_score: float, new_item_bias: float, fixed_weights: np.ndarray, *forest: np.ndarray) -> np.ndarray:
    """Final scores from the ``linear`` ones. Without ``rerank``: the linear score where it is at least
    ``min_score``, else -inf. With it: the trees' score (plus the new-item bias and fixed weights) of the
    ``shortlist`` rows with the best linear scores at or above ``min_score``, -inf elsewhere. Rows whose
    ``known`` score is finite (scored before, for a narrower shortlist) keep it: a row's tree score does not
    depend on the other rows."""
    eligible = np.where(linear >= min_score, linear, -np.inf)
    if not rerank:
        return eligible
    rows = best_positions(eligible, shortlist)
    final = np.full(len(linear), -np.inf)
    final[rows] = known[rows]
    rows = rows[known[rows] == -np.inf]
    columns = np.empty((features.shape[1], len(rows)))
    extra = np.zeros(len(rows))  # new-item bias and fixed weights
    for i in range(len(rows)):
        values = features[rows[i]]
        for j in range(len(values)):
            value = np.float64(values[j])
            columns[j, i] = 0.0 if np.isnan(value) else value
            extra[i] += value * fixed_weights[j]
        if values[_OWN] <= 0:
            extra[i] += new_item_bias
    final[rows] = score_columns(columns, *forest) + extra
    return final


#: up to this many positions, best_positions keeps a sorted buffer in one pass; beyond, it sorts
_BUFFERED_K: Final[int] = 64


@numba.njit(cache=True, nogil=True)
def best_positions(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest finite ``values``, largest first; ties by position.

    For the usual small ``k`` (the shortlist, the answer), one pass keeps the best so far in a sorted buffer:
    a value enters only above the buffer's last, and after the equal values already in, so ties stay in
    position order. That is 2-3x faster than partitioning at 80-1,500 values, and compiles in a fraction
    of the time numba's ``np.partition`` takes. Larger ``k``: a stable sort."""
    if k > _BUFFERED_K:
        finite = np.flatnonzero(values > -np.inf)  # -inf: under the cut-off, or outside the shortlist
        return finite[np.argsort(-values[finite], kind="mergesort")][:k]  # stable: ties in position order
    best = np.empty(max(min(k, len(values)), 0), dtype=np.int64)
    kept = 0
    for i in range(len(values)):
        value = values[i]
        if not value > -np.inf:  # -inf or NaN: never returned
            continue
        if kept == len(best):
            if kept == 0 or not value > values[best[kept - 1]]:
                continue
            kept -= 1  # the smallest (the latest of equals) drops out
        j = kept
        while j > 0 and value > values[best[j - 1]]:
            best[j] = best[j - 1]
            j -= 1
        best[j] = i
        kept += 1
    return best[:kept]
