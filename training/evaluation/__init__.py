"""Offline hit-rate evaluation: the "switch" hold-out protocol, our engine against strong baselines.

The package: :mod:`~training.evaluation.protocol` (the queries, scoring every method, the margins and the
headroom), :mod:`~training.evaluation.baselines` (our engine as served and the baselines, one interface),
:mod:`~training.evaluation.metrics` and :mod:`~training.evaluation.output` (the JSON and the plot).

Protocol (docs/evaluation.md): split events by time. For customer h and substitution group T, X is h's
most-bought item of T before the split (bought in at least 2 baskets). A test event is a basket after the
split holding some Y in T with Y != X and no X: h substituted. One query per (h, X); relevant = the Ys of all
those baskets (see :mod:`training.queries`). "New to customer" keeps the Ys h never bought before the split
(queries without one drop out of it).

Every method answers the same queries with 10 items; metrics are HR@1/3/5/10, NDCG@10, MRR@10 and catalog
coverage (share of items with training events that appear in some top 10). For HR@1, HR@3 and NDCG@10, ours
minus the best baseline comes with a 95% bootstrap interval over customers: is the win more than noise?

Our engine answers once per intent (:class:`recsys.domain.types.Intent`): balanced ("ours") against the best baseline
on both subsets; familiar and discover each against their specialist, on the queries they are for
(:data:`INTENT_SPECIALISTS`).

Headroom: two reference rankings read the test period itself, so no method could be built like them; they
show how high the metrics can go on these queries. ``future-popular-in-group`` ranks X's group by how many
other customers bought each item for the first time in the test period (what any non-personal guess of "what
they will try" could at best know); ``oracle-switch`` takes, per query, the better of that and
history-then-popular (as if one knew whether the customer rebuys one of their own items or tries a new one).
Each method is also scored on the two kinds of query: "rebuy" (a Y the customer bought before) and "trial"
(every Y new to them).
"""

from training.evaluation.baselines import (
    Baseline,
    RankFunction,
    discover_as_of,
    engine_ranker,
    future_trials,
    intent_rankers,
    make_methods,
)
from training.evaluation.metrics import CUTOFF, HIT_KS, margin_interval
from training.evaluation.output import plot, write_json
from training.evaluation.protocol import (
    AVAILABILITY_MODES,
    BOUNDS,
    DEFAULT_SPLIT_WEEKS,
    INTENT_SPECIALISTS,
    MARGIN_METRICS,
    QUERY_TYPES,
    SUBSETS,
    EvaluationResult,
    Specialist,
    availability_price,
    check_no_leakage,
    default_split,
    evaluate,
    score,
    score_queries,
)

__all__ = ["AVAILABILITY_MODES", "BOUNDS", "CUTOFF", "DEFAULT_SPLIT_WEEKS", "HIT_KS", "INTENT_SPECIALISTS",
           "MARGIN_METRICS", "QUERY_TYPES", "SUBSETS", "Baseline", "EvaluationResult", "RankFunction", "Specialist",
           "availability_price", "check_no_leakage", "default_split", "discover_as_of", "engine_ranker", "evaluate",
           "future_trials", "intent_rankers",
           "make_methods", "margin_interval", "plot", "score", "score_queries", "write_json"]
