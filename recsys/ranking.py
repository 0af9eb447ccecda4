"""The ranking features and the linear scorer that combines them.

Every candidate of a query gets one row of :data:`FEATURES`, each scaled to roughly [0, 1] (``widened`` is
an indicator). The score is ``features @ weights``. Default weights are set by hand; a trained model may
carry learned weights in its manifest (``ranker.weights``), which the engine uses instead.
"""

from __future__ import annotations

from typing import Final

import numpy as np

FEATURES: Final[tuple[str, ...]] = (
    "similarity",        # cosine of the ALS item embeddings
    "bought_instead",    # same-group items bought by the same customers (switching)
    "viewed_together",   # same-group items viewed/carted in one session
    "popularity",        # distinct customers, relative to the group's most popular item
    "trend",             # recent (3-week half-life) demand, relative to the group's top
    "size_match",        # exp(-|log size ratio|) when the unit families agree, else 0
    "price_match",       # exp(-|log price ratio|)
    "same_brand",
    "same_private_label",
    "own_history",       # the customer bought this candidate before (log count)
    "own_share",         # the candidate's share of the customer's purchases in X's group
    "variety_new",       # never bought by the customer x how varied the customer's purchases in X's group are
    "brand_affinity",    # the customer's share of the candidate's brand in X's category
    "size_affinity",     # closeness to the customer's usual size in the category
    "price_affinity",    # closeness to the customer's usual price level in the category
    "widened",           # candidate comes from the parent category, not X's own group
)

DEFAULT_WEIGHTS: Final[dict[str, float]] = {
    "similarity": 1.0,
    "bought_instead": 2.0,
    "viewed_together": 1.0,
    "popularity": 0.8,
    "trend": 0.5,
    "size_match": 0.5,
    "price_match": 0.5,
    "same_brand": 0.2,
    "same_private_label": 0.1,
    "own_history": 1.5,
    "own_share": 1.0,
    "variety_new": 0.5,
    "brand_affinity": 1.0,
    "size_affinity": 0.3,
    "price_affinity": 0.3,
    "widened": -1.0,
}


def weight_vector(weights: dict[str, float] | None = None) -> np.ndarray:
    """Weights in :data:`FEATURES` order; names missing from ``weights`` take their default."""
    merged = {**DEFAULT_WEIGHTS, **(weights or {})}
    unknown = set(merged) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown ranking features: {sorted(unknown)}")
    return np.asarray([merged[name] for name in FEATURES], dtype=np.float32)
