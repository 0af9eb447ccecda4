"""A query's candidates: the hard rules, the request's filters, and each candidate's feature row.

Hard rules, enforced before ranking: a candidate is never X itself, never out of stock at the queried store and
never without evidence that the store has it (:mod:`recsys.query.availability`), never excluded (in the cart),
always in X's substitution group (or in X's parent category when the group has too few, which the answer says),
and always passes the request's filters, the catalog attributes it must ``keep`` among them
(:mod:`recsys.query.attributes`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

import faiss
import numpy as np

from recsys.domain.types import SubstituteFilters
from recsys.model.data import PAIR_SIGNALS, ModelData
from recsys.query.availability import StoreAvailability
from recsys.query.items import ItemTable
from recsys.query.kernels import FeatureArrays, SparseRows, best_positions, candidate_features, plain, rule_mask, widen

_NO_MASK: Final[np.ndarray] = np.empty(0, dtype=bool)
_NO_ITEMS: Final[np.ndarray] = np.empty(0, dtype=np.int64)


class CandidateFinder:
    """Finds the allowed candidates of a query and computes their feature rows, from arrays built at load."""

    def __init__(self, model: ModelData, items: ItemTable, availability: StoreAvailability, max_candidates: int,
                 min_group_size: int) -> None:
        self.model, self.items, self.availability = model, items, availability
        self.max_candidates, self.min_group_size = max_candidates, min_group_size
        self.store_row = {str(s): i for i, s in enumerate(model.stores)}
        self.home_store: list[int] = model.home_store.tolist()  # per customer, the home store's row (-1: none)
        self.store_items = SparseRows.of(model.store_items)
        # recsys.query.kernels.PAIR_FEATURES order
        self.pairs = SparseRows.of(*(getattr(model, name) for name in PAIR_SIGNALS))
        # columns: recency-weighted interactions, purchase count, short half-life (trend) weight
        self.customer_items = SparseRows.of(model.customer_weight, model.customer_count, model.customer_recent)
        self.accepted = SparseRows.of(model.customer_accepted)
        # a plain view of the (memory-mapped) factors: slicing a np.memmap costs microseconds of subclass overhead
        self.factors: np.ndarray = np.asarray(model.factors)
        self._feature_arrays = plain(FeatureArrays(items.columns, self.pairs, self.store_items, self.customer_items,
                                                   self.accepted))

    def find(self, x: int, cust_row: int | None, store: str, exclude: Iterable[str] = (),
             filters: SubstituteFilters | None = None, new_only: bool = False
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every allowed candidate for item index ``x`` with its feature rows and whether it is widened;
        ``new_only``: none the customer ever bought (a hard rule like the others, so widening counts only
        what passes it)."""
        lo, hi = self.items.group_bounds[x]
        never = self.bought(cust_row) if new_only and cust_row is not None else _NO_ITEMS
        candidates, similarity = self.in_range(x, lo, hi, store, exclude=exclude, filters=filters, never=never)
        plo, phi = self.items.parent_bounds[x]
        if len(candidates) < self.min_group_size and phi - plo > hi - lo:
            wide, wide_sim = self.in_range(x, plo, phi, store, exclude=exclude, filters=filters, never=never)
            candidates, similarity, widened = widen(candidates, similarity, wide, wide_sim, lo, hi)
        else:
            widened = np.zeros(len(candidates), dtype=bool)
        store_row = self.store_row.get(store)
        if store_row is None and cust_row is not None and self.home_store[cust_row] >= 0:
            store_row = self.home_store[cust_row]
        features = self.features(x, candidates, similarity, widened, cust_row, store_row)
        return candidates, features, widened

    def nearest_in_group(self, x: int, store: str, exclude: Iterable[str] = (),
                         filters: SubstituteFilters | None = None, k: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Members of X's group that pass the hard rules and filters, most similar to X first (the best ``k``
        when given), with their cosine."""
        candidates, similarity = self.in_range(x, *self.items.group_bounds[x], store, exclude=exclude, filters=filters)
        best = best_positions(similarity.astype(np.float64), len(similarity) if k is None else k)  # one compile
        return candidates[best], similarity[best]

    def bought(self, cust_row: int) -> np.ndarray:
        """The items the customer bought (sorted indices): not those they only viewed or carted."""
        items, values = self.customer_items.row(cust_row)
        return items[values[:, 1] > 0]  # column 1: purchase count

    def in_range(self, x: int, lo: int, hi: int, store: str, *, exclude: Iterable[str],
                 filters: SubstituteFilters | None, never: np.ndarray = _NO_ITEMS) -> tuple[np.ndarray, np.ndarray]:
        """Candidates in [lo, hi) that pass :meth:`allowed`, with their cosine to x: all of them when the range or
        what passes has at most ``max_candidates`` (the rules come first, so a filter that leaves few items of a
        large parent category costs no search), else the nearest ``max_candidates`` of the range (FAISS) that
        pass. ``never``: sorted item indices that never pass."""
        members = np.arange(lo, hi)
        keep = self.allowed(members, x, store, exclude, filters, never)
        factors = self.factors
        if hi - lo <= self.max_candidates:  # BLAS over the range: the similarity feature the ranker was fitted on
            return members[keep], (factors[lo:hi] @ factors[x])[keep]
        candidates = members[keep]
        if len(candidates) <= self.max_candidates:
            return candidates, factors[candidates] @ factors[x]
        # faiss's stubs omit the keyword form of its Python wrapper, which also keeps the selector alive
        params = faiss.SearchParameters(sel=faiss.IDSelectorRange(lo, hi, True))  # type: ignore[call-arg]
        sims, ids = self.model.index.search(factors[x:x + 1], self.max_candidates, params=params)
        found = ids[0] >= 0
        nearest, similarity = ids[0][found].astype(np.int64), sims[0][found]
        passing = keep[nearest - lo]
        return nearest[passing], similarity[passing]

    def allowed(self, candidates: np.ndarray, x: int, store: str, exclude: Iterable[str] = (),
                filters: SubstituteFilters | None = None, never: np.ndarray = _NO_ITEMS) -> np.ndarray:
        """Which ``candidates`` pass the hard rules (not X, available at ``store``, not excluded, not in the sorted
        item indices ``never``) and ``filters``."""
        stock = self.availability.blocked(store)
        index_of = self.items.index_of
        excluded = [index_of[e] for e in exclude if e in index_of]
        if excluded:
            never = np.union1d(np.asarray(excluded, dtype=np.int64), never)
        return rule_mask(candidates, x, _NO_MASK if stock is None else stock, never,
                         _NO_MASK if filters is None else self._filter_mask(candidates, x, filters))

    def features(self, x: int, candidates: np.ndarray, similarity: np.ndarray, widened: np.ndarray,
                 cust_row: int | None, store_row: int | None) -> np.ndarray:
        """The candidates' rows of :class:`recsys.query.kernels.Feature` (one compiled pass)."""
        return candidate_features(x, candidates, similarity, widened, self._feature_arrays,
                                  -1 if store_row is None else store_row, -1 if cust_row is None else cust_row,
                                  self.items.group_bounds[x], self.items.parent_bounds[x])

    def _filter_mask(self, candidates: np.ndarray, x: int, filters: SubstituteFilters) -> np.ndarray:
        items = self.items
        mask = np.ones(len(candidates), dtype=bool)
        if filters.brands is not None:
            mask &= np.isin(items.brand_codes[candidates], items.brand_codes_of(filters.brands))
        if filters.exclude_brands:
            mask &= ~np.isin(items.brand_codes[candidates], items.brand_codes_of(filters.exclude_brands))
        if filters.private_label is not None:
            mask &= items.private_label[candidates] == filters.private_label
        if filters.max_price is not None:
            mask &= items.price[candidates] <= filters.max_price  # unknown price (NaN) fails
        if filters.same_size_family or filters.max_size_ratio is not None:
            mask &= (items.family_codes[candidates] == items.family_codes[x]) & (items.family_codes[x] >= 0)
        if filters.max_size_ratio is not None:
            mask &= np.abs(items.log_size[candidates] - items.log_size[x]) <= math.log(filters.max_size_ratio) + 1e-6
        if filters.keep:
            mask &= items.attributes.keeping(x, candidates, filters.keep)
        return mask
