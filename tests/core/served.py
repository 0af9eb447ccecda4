"""The scores a query is ranked by, computed as :func:`recsys.query.kernels.select` computes them in its first pass (the
linear score, the cut-off, the shortlist and the re-ranker), for tests that look at scores rather than answers."""

import numpy as np

from recsys.query.kernels import linear_scores, rescore
from recsys.query.ranking import Scorer


def served_scores(scorer: Scorer, features: np.ndarray, shortlist: int | None = None, rerank: bool = True
                  ) -> np.ndarray:
    """Scores of all rows; -inf for rows whose linear score is under the cut-off (``min_score``). With a
    re-ranker (and ``rerank``), the linear score keeps the best ``shortlist`` of the other rows (all when None) and
    the re-ranker scores them; the rest get -inf too."""
    linear = linear_scores(features, scorer.arrays)
    return rescore(features, linear, np.full(len(linear), -np.inf), len(features) if shortlist is None else shortlist,
                   rerank and scorer.trees is not None, scorer.arrays)
