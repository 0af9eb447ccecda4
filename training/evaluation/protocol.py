"""The evaluation protocol: the switch hold-out (see the package's docstring), every method scored on the same
queries, the margins of ours over the best baseline and of each intent over its specialist, and the headroom."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
import pandas as pd

from recsys.domain.schema import Dataset
from recsys.domain.types import AvailabilityPolicy, Intent
from recsys.model.artifact import ArtifactError
from recsys.model.registry import INTENT_METHODS
from recsys.query.availability import EVERYTHING
from recsys.query.engine import SubstituteEngine
from recsys.state.inventory import ONLINE
from training.evaluation.baselines import FuturePopularInGroup, RankFunction, future_trials, make_methods
from training.evaluation.metrics import margin_interval, means, per_query_metrics
from training.progress import progress_bar
from training.queries import Queries, build_queries

DEFAULT_SPLIT_WEEKS: Final[int] = 40
SUBSETS: Final[tuple[str, ...]] = ("all", "new_to_customer")
#: the headline metrics: ours against the best baseline, with a bootstrap interval of the difference
MARGIN_METRICS: Final[tuple[str, ...]] = ("HR@1", "HR@3", "NDCG@10")
#: reference rankings that read the test period (see the module's docstring): headroom, not competitors
BOUNDS: Final[tuple[str, ...]] = ("future-popular-in-group", "oracle-switch")
QUERY_TYPES: Final[tuple[str, ...]] = ("rebuy", "trial")
#: how answers are checked against what stores have (see :func:`availability_price`): every item everywhere (what
#: the main table measures), the online channel's evidence, and each query at its switch basket's store
AVAILABILITY_MODES: Final[tuple[str, ...]] = ("every item", "online (chain evidence)", "at the basket's store")


class Specialist(NamedTuple):
    """What an intent is judged on: a subset of the queries and the baseline built for it."""

    subset: str
    baseline: str


#: familiar is for acceptance on all queries, discover for trials on new-to-customer ones (balanced: both, against
#: the best baseline of each)
INTENT_SPECIALISTS: Final[dict[Intent, Specialist]] = {
    Intent.familiar: Specialist("all", "history-then-popular"),
    Intent.discover: Specialist("new_to_customer", "popular-in-group"),
}


def default_split(events: pd.DataFrame, weeks: int = DEFAULT_SPLIT_WEEKS) -> pd.Timestamp:
    """Midnight ``weeks`` weeks after the first event (The Complete Journey: after week 40 = 2017-10-08)."""
    return pd.Timestamp(events["timestamp"].min()).normalize() + pd.Timedelta(weeks=weeks)


@dataclass
class EvaluationResult:
    split: str
    model_version: str
    queries: dict[str, int]
    metrics: dict[str, dict[str, dict[str, float]]]  # method -> subset -> metric -> value
    seconds: dict[str, float] = field(default_factory=dict)
    # subset -> metric -> ours minus the best baseline: {"baseline", "difference", "ci95": [low, high]}
    margins: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # familiar and discover -> metric -> the intent minus its specialist on its subset, as ``margins``
    intent_margins: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    end: str | None = None  # the test period's end (exclusive); None: the data's end
    bounds: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # BOUNDS, as ``metrics``
    query_types: dict[str, int] = field(default_factory=dict)  # how many queries of each of QUERY_TYPES
    # method or bound -> query type -> MARGIN_METRICS (on all of that type's Ys)
    by_query_type: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # AVAILABILITY_MODES -> ours' MARGIN_METRICS and HR@10 on all queries (empty unless asked for)
    availability: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "end": self.end, "model_version": self.model_version, "queries": self.queries,
                "metrics": self.metrics, "margins": self.margins, "intent_margins": self.intent_margins,
                "bounds": self.bounds,
                "query_types": self.query_types, "by_query_type": self.by_query_type, "seconds": self.seconds,
                **({"availability": self.availability} if self.availability else {})}

    def best_baseline(self, subset: str, metric: str) -> tuple[str, float]:
        ours = set(INTENT_METHODS.values())
        baselines = {m: v[subset][metric] for m, v in self.metrics.items() if m not in ours}
        name = max(baselines, key=lambda m: baselines[m])
        return name, baselines[name]


def check_no_leakage(engine: SubstituteEngine, split: pd.Timestamp) -> None:
    end = pd.Timestamp(engine.manifest.data_span.end)
    if end >= split:
        raise ArtifactError(
            f"model {engine.version} saw data up to {end}, at or after the split {split}: its scores would "
            f"leak the test period. Train one with `recsys train --train-until {split.date()}` or omit --model."
        )


def evaluate(engine: SubstituteEngine, dataset: Dataset, split: pd.Timestamp, *, max_queries: int | None = None,
             seed: int = 0, show_progress: bool = True, end: pd.Timestamp | None = None,
             availability: bool = False) -> EvaluationResult:
    """Run every method on the same switch queries (test period [split, end), to the data's end when ``end`` is
    None) and compute the metrics on both subsets. Every method may rank every item (the engine's
    :data:`recsys.query.availability.EVERYTHING` policy for the run): this measures the ranking. ``availability``:
    also measure what answering only with items a store is known to have costs (:func:`availability_price`)."""
    served = engine.policy
    engine.use_policy(EVERYTHING)
    try:
        return _evaluate(engine, dataset, split, max_queries=max_queries, seed=seed, show_progress=show_progress,
                         end=end, availability=availability)
    finally:
        engine.use_policy(served)


def _evaluate(engine: SubstituteEngine, dataset: Dataset, split: pd.Timestamp, *, max_queries: int | None,
              seed: int, show_progress: bool, end: pd.Timestamp | None, availability: bool) -> EvaluationResult:
    check_no_leakage(engine, split)
    if end is not None and end <= split:
        raise ValueError(f"the test period's end {end} is not after the split {split}")
    events = dataset.events if end is None else dataset.events[dataset.events["timestamp"] < end]
    started = time.perf_counter()
    queries = build_queries(events, engine, split).sample(max_queries, seed)
    if len(queries) == 0:
        raise ValueError(f"no switch queries after the split {split}: move the split earlier")
    built = time.perf_counter() - started
    methods = make_methods(engine, events, split, seed)
    per_query, coverage, seconds = score_queries(engine, methods, queries, show_progress)
    result = EvaluationResult(split=str(split), model_version=engine.version,
                              queries={"all": len(queries), "new_to_customer": queries.n_new},
                              metrics=means(per_query, coverage), seconds={"queries": round(built, 2), **seconds},
                              end=None if end is None else str(end))
    customers = {"all": queries.customer, "new_to_customer": queries.customer[queries.new_mask]}

    def margin(method: str, baseline: str, subset: str, metric: str) -> dict[str, Any]:
        difference, low, high = margin_interval(per_query[method][subset][metric], per_query[baseline][subset][metric],
                                                customers[subset], seed)
        return {"baseline": baseline, "difference": round(difference, 5), "ci95": [round(low, 5), round(high, 5)]}

    for subset in SUBSETS:
        for metric in MARGIN_METRICS if len(customers[subset]) else ():
            result.margins.setdefault(subset, {})[metric] = margin("ours", result.best_baseline(subset, metric)[0],
                                                                   subset, metric)
    for intent, specialist in INTENT_SPECIALISTS.items():
        if len(customers[specialist.subset]):
            result.intent_margins[intent.value] = {
                metric: margin(INTENT_METHODS[intent], specialist.baseline, specialist.subset, metric)
                for metric in MARGIN_METRICS}
    _add_headroom(result, engine, events, split, queries, per_query)
    if availability:
        result.availability = availability_price(engine, queries)
    return result


def availability_price(engine: SubstituteEngine, queries: Queries) -> dict[str, dict[str, float]]:
    """Ours (balanced) on the same queries in each of :data:`AVAILABILITY_MODES`: every item everywhere; the
    online channel's rules (items with evidence in the chain); and each query at its switch basket's store, with
    that store's evidence (the store the shopper was in when they switched; the online channel when the basket
    had none). Both with the service's default policy (no unknown items). No stock is known, so nothing is out of
    stock: what is measured is the price of offering only items with evidence. Restores the engine's policy."""
    served = engine.policy
    stores = queries.store if queries.store is not None else np.full(len(queries), ONLINE, dtype=object)
    modes = {AVAILABILITY_MODES[0]: (EVERYTHING, False), AVAILABILITY_MODES[1]: (AvailabilityPolicy(), False),
             AVAILABILITY_MODES[2]: (AvailabilityPolicy(), True)}
    result = {}
    try:
        for name, (policy, at_store) in modes.items():
            engine.use_policy(policy)
            ranked = []
            for x, customer, store in zip(queries.x.tolist(), queries.customer.tolist(), stores.tolist(), strict=True):
                cust = customer if customer >= 0 else None
                where = store if at_store and engine.availability.knows(store) else ONLINE
                candidates, features, _ = engine.candidates(x, cust, where)
                top, _ = engine.select(x, candidates, features, 10)
                ranked.append(candidates[top])
            values = per_query_metrics(ranked, queries.relevant)
            result[name] = {metric: round(float(values[metric].mean()), 5)
                            for metric in (*MARGIN_METRICS, "HR@10")}
    finally:
        engine.use_policy(served)
    return result


def _add_headroom(result: EvaluationResult, engine: SubstituteEngine, events: pd.DataFrame, split: pd.Timestamp,
                  queries: Queries, per_query: dict[str, dict[str, dict[str, np.ndarray]]]) -> None:
    """The reference rankings that read the test period, and every method's metrics per kind of query."""
    future = FuturePopularInGroup(engine, *future_trials(engine, events, split))
    bounds, coverage, _ = score_queries(engine, {BOUNDS[0]: future}, queries)
    history = per_query["history-then-popular"]
    bounds[BOUNDS[1]] = {subset: {metric: np.maximum(values, history[subset][metric])
                                  for metric, values in bounds[BOUNDS[0]][subset].items()} for subset in SUBSETS}
    result.bounds = means(bounds, coverage)
    rebuy = queries.rebuy_mask
    masks = dict(zip(QUERY_TYPES, (rebuy, ~rebuy), strict=True))
    result.query_types = {kind: int(mask.sum()) for kind, mask in masks.items()}
    result.by_query_type = {
        name: {kind: {metric: float(values["all"][metric][mask].mean()) if mask.any() else 0.0
                      for metric in MARGIN_METRICS} for kind, mask in masks.items()}
        for name, values in {**per_query, **bounds}.items()}


def score(engine: SubstituteEngine, methods: dict[str, RankFunction], queries: Queries, show_progress: bool = False
          ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, float]]:
    """Metrics of each method on both subsets (method -> subset -> metric), and seconds per method."""
    per_query, coverage, seconds = score_queries(engine, methods, queries, show_progress)
    return means(per_query, coverage), seconds


def score_queries(engine: SubstituteEngine, methods: dict[str, RankFunction], queries: Queries,
                  show_progress: bool = False
                  ) -> tuple[dict[str, dict[str, dict[str, np.ndarray]]], dict[str, float], dict[str, float]]:
    """Each method's metric values per query on both subsets (method -> subset -> metric -> values; the
    new-to-customer values follow the order of ``queries.new_mask``), its catalog coverage and its seconds."""
    new_mask = queries.new_mask
    per_query: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    coverage: dict[str, float] = {}
    seconds = {}
    covered = engine.model.items["n_customers"].to_numpy() > 0
    bar = progress_bar(len(methods) * len(queries), "evaluate", "query", show_progress)  # lines in a log
    for name, rank in methods.items():
        bar.set_description(f"evaluate: {name}")
        start = time.perf_counter()
        ranked = []
        for x, customer in zip(queries.x.tolist(), queries.customer.tolist(), strict=True):
            ranked.append(np.asarray(rank(x, customer), dtype=np.int64))
            bar.update(1)
        seconds[name] = round(time.perf_counter() - start, 2)
        shown = np.unique(np.concatenate(ranked)) if ranked else np.empty(0, dtype=np.int64)
        coverage[name] = float(np.isin(np.flatnonzero(covered), shown).mean())
        per_query[name] = {
            "all": per_query_metrics(ranked, queries.relevant),
            "new_to_customer": per_query_metrics([r for r, m in zip(ranked, new_mask, strict=True) if m],
                                          [n for n, m in zip(queries.new, new_mask, strict=True) if m]),
        }
    bar.close()
    return per_query, coverage, seconds
