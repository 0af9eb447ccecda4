"""Offline hit-rate evaluation: the "switch" hold-out protocol, our engine against strong baselines.

Protocol (docs/evaluation.md): split events by time. For customer h and substitution group T, X is h's
most-bought item of T before the split (bought in at least 2 baskets). A test event is a basket after the
split holding some Y in T with Y != X and no X: h substituted. One query per (h, X); relevant = the Ys of all
those baskets (see :mod:`training.queries`). "New to customer" keeps the Ys h never bought before the split
(queries without one drop out of it).

Every method answers the same queries with 10 items; metrics are HR@1/3/5/10, NDCG@10, MRR@10 and catalog
coverage (share of items with training events that appear in some top 10). For HR@1, HR@3 and NDCG@10, ours
minus the best baseline comes with a 95% bootstrap interval over customers: is the win more than noise?

Our engine answers once per intent (:class:`recsys.types.Intent`): balanced ("ours") against the best baseline
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

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from tqdm.auto import tqdm

from recsys.artifact import ArtifactError
from recsys.engine import SubstituteEngine
from recsys.registry import INTENT_METHODS
from recsys.schema import PURCHASE_TYPES, Dataset
from recsys.types import Intent
from training.neighbours import cooccurrence
from training.queries import Queries, build_queries, customer_rows, positions_in

CUTOFF: Final[int] = 10
HIT_KS: Final[tuple[int, ...]] = (1, 3, 5, 10)
DEFAULT_SPLIT_WEEKS: Final[int] = 40
SUBSETS: Final[tuple[str, ...]] = ("all", "new_to_customer")
#: the headline metrics: ours against the best baseline, with a bootstrap interval of the difference
MARGIN_METRICS: Final[tuple[str, ...]] = ("HR@1", "HR@3", "NDCG@10")
#: reference rankings that read the test period (see the module's docstring): headroom, not competitors
BOUNDS: Final[tuple[str, ...]] = ("future-popular-in-group", "oracle-switch")
QUERY_TYPES: Final[tuple[str, ...]] = ("rebuy", "trial")


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


Ranker = Callable[[int, int], np.ndarray]  # (x, customer row) -> top-10 internal indices


def engine_ranker(engine: SubstituteEngine, intent: Intent = Intent.balanced) -> Ranker:
    """The engine's own top 10 for ``intent`` as served (its scorer, cut-off and near-duplicate rule at call
    time)."""

    def ours(x: int, customer: int) -> np.ndarray:
        candidates, features, _ = engine.candidates(x, customer if customer >= 0 else None, intent=intent)
        top, _ = engine.select(x, candidates, features, CUTOFF, intent=intent)
        return candidates[top]

    return ours


def intent_rankers(engine: SubstituteEngine) -> dict[str, Ranker]:
    """The engine's answers for each intent, by :data:`INTENT_METHODS` name."""
    return {name: engine_ranker(engine, intent) for intent, name in INTENT_METHODS.items()}


def discover_as_of(engine: SubstituteEngine, events: pd.DataFrame, split: pd.Timestamp) -> Ranker:
    """Discover as it would have answered at ``split``: never an item the customer bought before ``split``.

    The served discover leaves out every purchase the model knows. For a model trained before ``split`` (``recsys
    evaluate``'s) that is the same rule, and the same answers (tested). A model that saw the test period (the
    nightly gate's: both models have trained on its hold-out weeks) also knows the test period's purchases, which
    are the very items a new-to-customer query is judged on, so its served discover could never hit one there."""
    purchases = events.loc[(events["timestamp"] < split) & events["event_type"].isin(list(PURCHASE_TYPES)),
                           ["customer_id", "item_id"]]
    items = positions_in(pd.Index(engine.item_ids), purchases["item_id"])
    rows = customer_rows(engine, purchases["customer_id"])
    known = (items >= 0) & (rows >= 0)
    bought = sp.csr_matrix((np.ones(int(known.sum()), dtype=np.int8), (rows[known], items[known])),
                           shape=(len(engine.model.customers), engine.model.n_items))
    ids = engine.item_ids

    def discover(x: int, customer: int) -> np.ndarray:
        own = ids[bought.indices[bought.indptr[customer]:bought.indptr[customer + 1]]] if customer >= 0 else ()
        candidates, features, _ = engine.candidates(x, customer if customer >= 0 else None, exclude=own)
        top, _ = engine.select(x, candidates, features, CUTOFF, intent=Intent.discover)
        return candidates[top]

    return discover


def make_methods(engine: SubstituteEngine, events: pd.DataFrame, split: pd.Timestamp, seed: int = 0
                 ) -> dict[str, Ranker]:
    """Our engine and the baselines, each a function (x, customer row) -> top 10."""
    rng = np.random.default_rng(seed)
    model = engine.model
    indptr, indices, count = model.customer_count.indptr, model.customer_count.indices, model.customer_count.data

    def popular_fill(ranked: np.ndarray, x: int, lo: int, hi: int) -> np.ndarray:
        """``ranked`` first, then the group's most popular (items are stored most popular first)."""
        if len(ranked) >= CUTOFF:
            return ranked[:CUTOFF]
        rest = np.arange(lo, min(hi, lo + CUTOFF + len(ranked) + 1))
        rest = rest[(rest != x) & ~np.isin(rest, ranked)]
        return np.concatenate([ranked, rest])[:CUTOFF]

    def random_in_group(x: int, customer: int) -> np.ndarray:
        lo, hi = engine.group_range(x)
        members = np.arange(lo, hi)
        members = members[members != x]
        return rng.permutation(members)[:CUTOFF]

    def popular_in_group(x: int, customer: int) -> np.ndarray:
        lo, hi = engine.group_range(x)
        return popular_fill(np.empty(0, dtype=np.int64), x, lo, hi)

    def history_then_popular(x: int, customer: int) -> np.ndarray:
        lo, hi = engine.group_range(x)
        own = np.empty(0, dtype=np.int64)
        if customer >= 0:
            start, end = indptr[customer], indptr[customer + 1]
            a, b = np.searchsorted(indices[start:end], [lo, hi])
            items, counts = indices[start + a:start + b], count[start + a:start + b]
            keep = (items != x) & (counts > 0)
            items, counts = items[keep], counts[keep]
            own = items[np.lexsort((items, -counts))].astype(np.int64)
        return popular_fill(own, x, lo, hi)

    # co-occurrence in baskets before the split, same group, cosine (the trainer's own routine)
    before = events.loc[(events["timestamp"] < split) & events["event_type"].isin(list(PURCHASE_TYPES)),
                        ["item_id", "session_id"]]
    item = positions_in(pd.Index(engine.item_ids), before["item_id"])
    basket = pd.factorize(before["session_id"])[0]
    basket_cooc = cooccurrence(basket[item >= 0], item[item >= 0], model.group_of, model.n_items, 200)

    def cooccurrence_in_group(x: int, customer: int) -> np.ndarray:
        lo, hi = engine.group_range(x)
        start, end = basket_cooc.indptr[x], basket_cooc.indptr[x + 1]
        neighbours, values = basket_cooc.indices[start:end], basket_cooc.data[start:end]
        ranked = neighbours[np.lexsort((neighbours, -values))].astype(np.int64)
        return popular_fill(ranked, x, lo, hi)

    als = AlternatingLeastSquares(factors=model.factors.shape[1])
    # the engine's own ALS embeddings, queried through implicit's API; items without events get no vector
    # (the engine's metadata-based cold-start vectors are ours, not the baseline's)
    warm = (model.items["n_customers"].to_numpy() > 0)[:, None]
    als.item_factors = np.where(warm, model.factors, 0.0).astype(np.float32)

    def implicit_raw(x: int, customer: int) -> np.ndarray:
        ids, _ = als.similar_items(x, N=CUTOFF + 1)
        return ids[ids != x][:CUTOFF]

    def implicit_in_group(x: int, customer: int) -> np.ndarray:
        lo, hi = engine.group_range(x)
        if hi - lo <= 1:
            return np.empty(0, dtype=np.int64)
        ids, _ = als.similar_items(x, N=min(CUTOFF + 1, hi - lo), items=np.arange(lo, hi))
        return ids[ids != x][:CUTOFF]

    return {
        **intent_rankers(engine),
        "random-in-group": random_in_group,
        "popular-in-group": popular_in_group,
        "history-then-popular": history_then_popular,
        "cooccurrence-in-group": cooccurrence_in_group,
        "implicit-similar-raw": implicit_raw,
        "implicit-in-group": implicit_in_group,
    }


def future_trials(engine: SubstituteEngine, events: pd.DataFrame, split: pd.Timestamp
                  ) -> tuple[np.ndarray, sp.csr_matrix]:
    """The test period's trials: per item, how many customers bought it at or after ``split`` and never before;
    and per customer (model row), the items they tried, so that a query's own customer can be left out."""
    purchases = events[events["event_type"].isin(list(PURCHASE_TYPES))]
    item = positions_in(pd.Index(engine.item_ids), purchases["item_id"])
    known = item >= 0
    pairs = pd.DataFrame({"customer": purchases["customer_id"].to_numpy()[known], "item": item[known],
                          "after": (purchases["timestamp"] >= split).to_numpy()[known]})
    first = pairs.groupby(["customer", "item"])["after"].all()  # every purchase of the pair in the test period
    tried = first[first.to_numpy()].index.to_frame(index=False)
    per_item = np.bincount(tried["item"], minlength=engine.model.n_items)
    rows = customer_rows(engine, tried["customer"])
    mine = rows >= 0
    by_customer = sp.csr_matrix((np.ones(int(mine.sum())), (rows[mine], tried["item"].to_numpy()[mine])),
                                shape=(len(engine.model.customers), engine.model.n_items))
    return per_item, by_customer


def _future_popular(engine: SubstituteEngine, per_item: np.ndarray, by_customer: sp.csr_matrix) -> Ranker:
    """X's group by the test period's trials, leaving out the query's own customer's (ties: the more popular
    before the split first)."""

    def rank(x: int, customer: int) -> np.ndarray:
        lo, hi = engine.group_range(x)
        members = np.arange(lo, hi)
        members = members[members != x]
        score = per_item[members]
        if customer >= 0:
            score = score - by_customer[customer, lo:hi].toarray().ravel()[members - lo]
        return members[np.lexsort((members, -score))][:CUTOFF]

    return rank


def _per_query(ranked: list[np.ndarray], relevant: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each metric's value per query (HR@k: 0 or 1)."""
    first = np.full(len(ranked), CUTOFF, dtype=np.int64)  # rank of the first relevant item; CUTOFF: none
    ndcg = np.zeros(len(ranked))
    discounts = 1.0 / np.log2(np.arange(2, CUTOFF + 2))
    for i, (top, rel) in enumerate(zip(ranked, relevant, strict=True)):
        is_rel = np.isin(top[:CUTOFF], rel)
        if is_rel.any():
            first[i] = int(np.argmax(is_rel))
            ndcg[i] = discounts[:len(is_rel)][is_rel].sum() / discounts[:min(len(rel), CUTOFF)].sum()
    mrr = np.where(first < CUTOFF, 1.0 / (first + 1), 0.0)
    return {**{f"HR@{k}": (first < k).astype(np.float64) for k in HIT_KS}, "NDCG@10": ndcg, "MRR@10": mrr}


def margin_interval(ours: np.ndarray, baseline: np.ndarray, clusters: np.ndarray, seed: int = 0,
                    resamples: int = 1000) -> tuple[float, float, float]:
    """Mean of ``ours - baseline`` over queries and its 95% bootstrap interval. Whole customers (``clusters``)
    are resampled: one customer's queries are not independent of each other."""
    difference = ours - baseline
    codes, _ = pd.factorize(clusters)
    sums, counts = np.bincount(codes, weights=difference), np.bincount(codes).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(difference.mean()), float(low), float(high)


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

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "end": self.end, "model_version": self.model_version, "queries": self.queries,
                "metrics": self.metrics, "margins": self.margins, "intent_margins": self.intent_margins,
                "bounds": self.bounds,
                "query_types": self.query_types, "by_query_type": self.by_query_type, "seconds": self.seconds}

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


def evaluate(engine: SubstituteEngine, dataset: Dataset, split: pd.Timestamp, max_queries: int | None = None,
             seed: int = 0, show_progress: bool = True, end: pd.Timestamp | None = None) -> EvaluationResult:
    """Run every method on the same switch queries (test period [split, end), to the data's end when ``end`` is
    None) and compute the metrics on both subsets."""
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
                              metrics=_means(per_query, coverage), seconds={"queries": round(built, 2), **seconds},
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
    return result


def _add_headroom(result: EvaluationResult, engine: SubstituteEngine, events: pd.DataFrame, split: pd.Timestamp,
                  queries: Queries, per_query: dict[str, dict[str, dict[str, np.ndarray]]]) -> None:
    """The reference rankings that read the test period, and every method's metrics per kind of query."""
    future = _future_popular(engine, *future_trials(engine, events, split))
    bounds, coverage, _ = score_queries(engine, {BOUNDS[0]: future}, queries)
    history = per_query["history-then-popular"]
    bounds[BOUNDS[1]] = {subset: {metric: np.maximum(values, history[subset][metric])
                                  for metric, values in bounds[BOUNDS[0]][subset].items()} for subset in SUBSETS}
    result.bounds = _means(bounds, coverage)
    rebuy = queries.rebuy_mask
    masks = dict(zip(QUERY_TYPES, (rebuy, ~rebuy), strict=True))
    result.query_types = {kind: int(mask.sum()) for kind, mask in masks.items()}
    result.by_query_type = {
        name: {kind: {metric: float(values["all"][metric][mask].mean()) if mask.any() else 0.0
                      for metric in MARGIN_METRICS} for kind, mask in masks.items()}
        for name, values in {**per_query, **bounds}.items()}


def score(engine: SubstituteEngine, methods: dict[str, Ranker], queries: Queries, show_progress: bool = False
          ) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, float]]:
    """Metrics of each method on both subsets (method -> subset -> metric), and seconds per method."""
    per_query, coverage, seconds = score_queries(engine, methods, queries, show_progress)
    return _means(per_query, coverage), seconds


def _means(per_query: dict[str, dict[str, dict[str, np.ndarray]]], coverage: dict[str, float]
           ) -> dict[str, dict[str, dict[str, float]]]:
    metrics = {name: {subset: {metric: float(values.mean()) if len(values) else 0.0
                               for metric, values in by_metric.items()}
                      for subset, by_metric in by_subset.items()}
               for name, by_subset in per_query.items()}
    for name, value in coverage.items():
        metrics[name]["all"]["coverage"] = value
    return metrics


def score_queries(engine: SubstituteEngine, methods: dict[str, Ranker], queries: Queries,
                  show_progress: bool = False
                  ) -> tuple[dict[str, dict[str, dict[str, np.ndarray]]], dict[str, float], dict[str, float]]:
    """Each method's metric values per query on both subsets (method -> subset -> metric -> values; the
    new-to-customer values follow the order of ``queries.new_mask``), its catalog coverage and its seconds."""
    new_mask = queries.new_mask
    per_query: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    coverage: dict[str, float] = {}
    seconds = {}
    covered = engine.model.items["n_customers"].to_numpy() > 0
    bar = tqdm(total=len(methods) * len(queries), desc="evaluate", unit="query", disable=not show_progress)
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
            "all": _per_query(ranked, queries.relevant),
            "new_to_customer": _per_query([r for r, m in zip(ranked, new_mask, strict=True) if m],
                                          [n for n, m in zip(queries.new, new_mask, strict=True) if m]),
        }
    bar.close()
    return per_query, coverage, seconds


def plot(result: EvaluationResult, path: Path) -> None:
    """HR@k of every method on both subsets, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, subset in zip(axes, SUBSETS, strict=True):
        for name, values in result.metrics.items():
            hr = [values[subset][f"HR@{k}"] for k in HIT_KS]
            style = ({"linewidth": 3, "color": "black"} if name == "ours" else
                     {"linewidth": 2.5, "linestyle": "-."} if name in INTENT_METHODS.values() else {"linewidth": 1.5})
            ax.plot(HIT_KS, hr, marker="o", label=name, **style)
        for (name, values), line in zip(result.bounds.items(), (":", "--"), strict=False):
            ax.plot(HIT_KS, [values[subset][f"HR@{k}"] for k in HIT_KS], linestyle=line, color="grey",
                    linewidth=1.5, label=f"{name} (reads the test period)")
        ax.set_title(f"{subset.replace('_', ' ')} ({result.queries[subset]:,} queries)")
        ax.set_xlabel("k")
        ax.set_xticks(HIT_KS)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("hit rate @ k")
    axes[1].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"switch hold-out, split {result.split[:10]}, model {result.model_version}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(result: EvaluationResult, path: Path) -> None:
    path.write_text(json.dumps(result.to_json(), indent=2))
