"""What the evaluation compares: our engine, as served, in each intent, and the baselines, each a
:class:`Baseline` with one interface: called with X's internal index and the customer's row (-1: unknown), it
returns its top :data:`CUTOFF` internal indices.

The baselines: random, popular and history-then-popular within X's group, basket co-occurrence within the group,
and the engine's own ALS vectors queried through ``implicit`` (catalog-wide, and within the group). Two reference
rankings read the test period (headroom, not competitors): :class:`FuturePopularInGroup` here, and the oracle
built from it in :mod:`training.evaluation.protocol`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from recsys.domain.schema import PURCHASE_TYPES
from recsys.domain.types import Intent
from recsys.model.registry import INTENT_METHODS
from recsys.query.engine import SubstituteEngine
from training.evaluation.metrics import CUTOFF
from training.neighbours import cooccurrence
from training.queries import customer_rows, positions_in

#: a method of the evaluation: (X's internal index, the customer's row or -1) -> its top CUTOFF internal indices
RankFunction = Callable[[int, int], np.ndarray]


def engine_ranker(engine: SubstituteEngine, intent: Intent = Intent.balanced) -> RankFunction:
    """The engine's own top 10 for ``intent`` as served (its scorer, cut-off and near-duplicate rule at call
    time)."""

    def ours(x: int, customer: int) -> np.ndarray:
        candidates, features, _ = engine.candidates(x, customer if customer >= 0 else None, intent=intent)
        top, _ = engine.select(x, candidates, features, CUTOFF, intent=intent)
        result: np.ndarray = candidates[top]
        return result

    return ours


def intent_rankers(engine: SubstituteEngine) -> dict[str, RankFunction]:
    """The engine's answers for each intent, by :data:`recsys.model.registry.INTENT_METHODS` name."""
    return {name: engine_ranker(engine, intent) for intent, name in INTENT_METHODS.items()}


def discover_as_of(engine: SubstituteEngine, events: pd.DataFrame, split: pd.Timestamp) -> RankFunction:
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
        result: np.ndarray = candidates[top]
        return result

    return discover


class Baseline:
    """A ranking to beat, on the engine's model: items of X's group (or the catalog), by some rule. Subclasses say
    how in :meth:`__call__`; ``name`` is the method's name in every table."""

    name: ClassVar[str]

    def __init__(self, engine: SubstituteEngine) -> None:
        self.engine = engine

    def __call__(self, x: int, customer: int) -> np.ndarray:
        raise NotImplementedError

    def popular_fill(self, ranked: np.ndarray, x: int) -> np.ndarray:
        """``ranked`` first, then X's group's most popular (items are stored most popular first)."""
        lo, hi = self.engine.group_range(x)
        if len(ranked) >= CUTOFF:
            return ranked[:CUTOFF]
        rest = np.arange(lo, min(hi, lo + CUTOFF + len(ranked) + 1))
        rest = rest[(rest != x) & ~np.isin(rest, ranked)]
        return np.concatenate([ranked, rest])[:CUTOFF]


class RandomInGroup(Baseline):
    """X's group in a random order (seeded: the same queries get the same answers in every run)."""

    name = "random-in-group"

    def __init__(self, engine: SubstituteEngine, rng: np.random.Generator) -> None:
        super().__init__(engine)
        self.rng = rng

    def __call__(self, x: int, customer: int) -> np.ndarray:
        lo, hi = self.engine.group_range(x)
        members = np.arange(lo, hi)
        members = members[members != x]
        return self.rng.permutation(members)[:CUTOFF]


class PopularInGroup(Baseline):
    """X's group, most popular first: the non-personal guess."""

    name = "popular-in-group"

    def __call__(self, x: int, customer: int) -> np.ndarray:
        return self.popular_fill(np.empty(0, dtype=np.int64), x)


class HistoryThenPopular(Baseline):
    """The customer's own items of X's group, most bought first, then the group's most popular."""

    name = "history-then-popular"

    def __call__(self, x: int, customer: int) -> np.ndarray:
        counts = self.engine.model.customer_count
        own = np.empty(0, dtype=np.int64)
        if customer >= 0:
            lo, hi = self.engine.group_range(x)
            start, end = counts.indptr[customer], counts.indptr[customer + 1]
            a, b = np.searchsorted(counts.indices[start:end], [lo, hi])
            items, times = counts.indices[start + a:start + b], counts.data[start + a:start + b]
            keep = (items != x) & (times > 0)
            items, times = items[keep], times[keep]
            own = items[np.lexsort((items, -times))].astype(np.int64)
        return self.popular_fill(own, x)


class CooccurrenceInGroup(Baseline):
    """X's group by co-occurrence with X in the baskets before the split (cosine, the trainer's own routine), then
    the group's most popular."""

    name = "cooccurrence-in-group"

    def __init__(self, engine: SubstituteEngine, events: pd.DataFrame, split: pd.Timestamp) -> None:
        super().__init__(engine)
        model = engine.model
        before = events.loc[(events["timestamp"] < split) & events["event_type"].isin(list(PURCHASE_TYPES)),
                            ["item_id", "session_id"]]
        item = positions_in(pd.Index(engine.item_ids), before["item_id"])
        basket = pd.factorize(before["session_id"])[0]
        self.pairs = cooccurrence(basket[item >= 0], item[item >= 0], model.group_of, model.n_items, 200)

    def __call__(self, x: int, customer: int) -> np.ndarray:
        start, end = self.pairs.indptr[x], self.pairs.indptr[x + 1]
        neighbours, values = self.pairs.indices[start:end], self.pairs.data[start:end]
        return self.popular_fill(neighbours[np.lexsort((neighbours, -values))].astype(np.int64), x)


def engine_als(engine: SubstituteEngine) -> AlternatingLeastSquares:
    """The engine's own ALS embeddings, queried through implicit's API; items without events get no vector (the
    engine's metadata-based cold-start vectors are ours, not the baseline's)."""
    model = engine.model
    als = AlternatingLeastSquares(factors=model.factors.shape[1])
    warm = (model.items["n_customers"].to_numpy() > 0)[:, None]
    als.item_factors = np.where(warm, model.factors, 0.0).astype(np.float32)
    return als


class ImplicitSimilarRaw(Baseline):
    """``implicit``'s ``similar_items`` on the engine's ALS vectors, over the whole catalog."""

    name = "implicit-similar-raw"

    def __init__(self, engine: SubstituteEngine, als: AlternatingLeastSquares) -> None:
        super().__init__(engine)
        self.als = als

    def __call__(self, x: int, customer: int) -> np.ndarray:
        ids, _ = self.als.similar_items(x, N=CUTOFF + 1)
        result: np.ndarray = ids[ids != x][:CUTOFF]
        return result


class ImplicitInGroup(ImplicitSimilarRaw):
    """``implicit``'s ``similar_items`` on the engine's ALS vectors, within X's group."""

    name = "implicit-in-group"

    def __call__(self, x: int, customer: int) -> np.ndarray:
        lo, hi = self.engine.group_range(x)
        if hi - lo <= 1:
            return np.empty(0, dtype=np.int64)
        ids, _ = self.als.similar_items(x, N=min(CUTOFF + 1, hi - lo), items=np.arange(lo, hi))
        result: np.ndarray = ids[ids != x][:CUTOFF]
        return result


class FuturePopularInGroup(Baseline):
    """Headroom, not a competitor: X's group by the test period's trials (:func:`future_trials`), leaving out the
    query's own customer's (ties: the more popular before the split first)."""

    name = "future-popular-in-group"

    def __init__(self, engine: SubstituteEngine, per_item: np.ndarray, by_customer: sp.csr_matrix) -> None:
        super().__init__(engine)
        self.per_item, self.by_customer = per_item, by_customer

    def __call__(self, x: int, customer: int) -> np.ndarray:
        lo, hi = self.engine.group_range(x)
        members = np.arange(lo, hi)
        members = members[members != x]
        score = self.per_item[members]
        if customer >= 0:
            score = score - self.by_customer[customer, lo:hi].toarray().ravel()[members - lo]
        result: np.ndarray = members[np.lexsort((members, -score))][:CUTOFF]
        return result


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


def make_methods(engine: SubstituteEngine, events: pd.DataFrame, split: pd.Timestamp, seed: int = 0
                 ) -> dict[str, RankFunction]:
    """Our engine in each intent and the baselines, by name, in the order of every table."""
    als = engine_als(engine)
    baselines: list[Baseline] = [
        RandomInGroup(engine, np.random.default_rng(seed)), PopularInGroup(engine), HistoryThenPopular(engine),
        CooccurrenceInGroup(engine, events, split), ImplicitSimilarRaw(engine, als), ImplicitInGroup(engine, als),
    ]
    return {**intent_rankers(engine), **{baseline.name: baseline for baseline in baselines}}
