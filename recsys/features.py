"""The feature rows of a query's candidates, computed in one compiled pass.

Each feature is a few arithmetic operations per candidate; done with numpy, a query paid about a microsecond
of call overhead for each of some 60 array operations. One numba kernel (:func:`candidate_features`) walks
the candidates once instead: the same values, read from the same load-time arrays (the engine's
:class:`recsys.sparse.SparseRows` and per-item columns). What each feature means is in
:data:`recsys.ranking.FEATURES`.
"""

from __future__ import annotations

import math
from typing import Final

import numba
import numpy as np

from recsys.ranking import FEATURES
from recsys.sparse import positions

_F = {name: i for i, name in enumerate(FEATURES)}
#: item-pair matrix columns (the engine's SparseRows order): switch, coview, switch_to, trial, feedback
PAIR_FEATURES: Final[tuple[int, ...]] = tuple(_F[name] for name in (
    "bought_instead", "viewed_together", "switched_to", "tried", "accepted_instead"))
#: the candidate's own features: popularity, trend, trial trend, launch recency
ITEM_FEATURES: Final[tuple[int, ...]] = tuple(_F[name] for name in (
    "popularity", "trend", "trial_trend", "launch_recency"))
(SIMILARITY, STORE_POPULARITY, SIZE_MATCH, PRICE_MATCH, SAME_BRAND, SAME_PRIVATE_LABEL, WIDENED, OWN_ACCEPTED,
 OWN_HISTORY, OWN_SHARE, OWN_COUNT, OWN_RECENT, OWN_TREND, VARIETY_NEW, OWN_LOYAL, BRAND_AFFINITY,
 SIZE_AFFINITY, PRICE_AFFINITY) = (_F[name] for name in (
    "similarity", "store_popularity", "size_match", "price_match", "same_brand", "same_private_label", "widened",
    "own_accepted", "own_history", "own_share", "own_count", "own_recent", "own_trend", "variety_new",
    "own_loyal", "brand_affinity", "size_affinity", "price_affinity"))
N_FEATURES: Final[int] = len(FEATURES)
_LOG4, _LOG11, _LOG5 = math.log1p(3.0), math.log1p(10.0), math.log1p(4.0)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _closeness(values: np.ndarray, items: np.ndarray, weights: np.ndarray, x_values: np.ndarray) -> np.ndarray:
    """exp(-|value - the weighted mean value of ``items``|) per entry of ``x_values``; 0 where unknown."""
    total = weighted = 0.0
    for i in range(len(items)):
        value = values[items[i]]
        if not np.isnan(value):
            total += weights[i]
            weighted += value * weights[i]
    out = np.zeros(len(x_values))
    if total > 0:
        centre = weighted / total
        for i in range(len(x_values)):
            if not np.isnan(x_values[i]):
                out[i] = math.exp(-abs(x_values[i] - centre))
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def candidate_features(
    x: int, candidates: np.ndarray, similarity: np.ndarray, widened: np.ndarray,
    pair_indptr: np.ndarray, pair_indices: np.ndarray, pair_values: np.ndarray, item_features: np.ndarray,
    store_row: int, store_indptr: np.ndarray, store_indices: np.ndarray, store_values: np.ndarray,
    family: np.ndarray, log_size: np.ndarray, log_price: np.ndarray, brand: np.ndarray, private_label: np.ndarray,
    customer_row: int, group: tuple[int, int], parent: tuple[int, int],
    customer_indptr: np.ndarray, customer_indices: np.ndarray, customer_values: np.ndarray,
    accepted_indptr: np.ndarray, accepted_indices: np.ndarray, accepted_values: np.ndarray,
) -> np.ndarray:
    """(len(candidates), N_FEATURES) float32 rows for item ``x``. ``store_row``/``customer_row`` -1: none;
    ``group``/``parent``: X's index ranges; customer values: weight, count, recent weight."""
    n = len(candidates)
    out = np.zeros((n, N_FEATURES), dtype=np.float32)
    sold = np.zeros(n)
    ascending = True
    for i in range(1, n):
        ascending &= candidates[i - 1] < candidates[i]
    pair_pos = positions(pair_indptr, pair_indices, x, candidates, ascending)
    store_pos = (positions(store_indptr, store_indices, store_row, candidates, ascending) if store_row >= 0
                 else np.full(n, -1, dtype=np.int64))
    for i in range(n):
        c = candidates[i]
        row = out[i]
        row[SIMILARITY] = min(max(similarity[i], 0.0), 1.0)
        pos = pair_pos[i]
        if pos >= 0:
            for j in range(len(PAIR_FEATURES)):
                row[PAIR_FEATURES[j]] = pair_values[pos, j]
        for j in range(len(ITEM_FEATURES)):
            row[ITEM_FEATURES[j]] = item_features[c, j]
        if store_pos[i] >= 0:
            sold[i] = store_values[store_pos[i], 0]
        # NaN (unknown size or price) compares false: it matches nothing
        if family[c] == family[x] and family[x] >= 0 and not np.isnan(log_size[c] - log_size[x]):
            row[SIZE_MATCH] = np.exp(-np.abs(log_size[c] - log_size[x]))
        if not np.isnan(log_price[c] - log_price[x]):
            row[PRICE_MATCH] = np.exp(-np.abs(log_price[c] - log_price[x]))
        row[SAME_BRAND] = brand[c] == brand[x]
        row[SAME_PRIVATE_LABEL] = private_label[c] == private_label[x]
        row[WIDENED] = widened[i]
    top = sold.max() if n else 0.0
    if top > 0:
        for i in range(n):
            out[i, STORE_POPULARITY] = math.log1p(sold[i]) / math.log1p(top)
    if customer_row >= 0:
        _personal(out, candidates, ascending, customer_row, group, parent, customer_indptr, customer_indices,
                  customer_values, accepted_indptr, accepted_indices, accepted_values, log_size, log_price, brand)
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _personal(out: np.ndarray, candidates: np.ndarray, ascending: bool, customer_row: int, group: tuple[int, int],
              parent: tuple[int, int], indptr: np.ndarray, indices: np.ndarray, values: np.ndarray,
              accepted_indptr: np.ndarray, accepted_indices: np.ndarray, accepted_values: np.ndarray,
              log_size: np.ndarray, log_price: np.ndarray, brand: np.ndarray) -> None:
    n = len(candidates)
    start, end = indptr[customer_row], indptr[customer_row + 1]
    items, weights = indices[start:end], values[start:end]
    # the customer's items in X's group and parent category: contiguous index ranges, so row slices
    g_a, g_b = np.searchsorted(items, group[0]), np.searchsorted(items, group[1])
    group_total = group_top_count = group_top_weight = 0.0
    bought_items = 0
    for j in range(g_a, g_b):
        group_total += weights[j, 1]
        group_top_count = max(group_top_count, weights[j, 1])
        group_top_weight = max(group_top_weight, weights[j, 0])
        bought_items += weights[j, 1] > 0
    variety = bought_items / group_total if group_total > 0 else 0.0
    accepted_pos = positions(accepted_indptr, accepted_indices, customer_row, candidates, ascending)
    own_pos = positions(indptr, indices, customer_row, candidates, ascending)
    for i in range(n):
        row = out[i]
        pos = accepted_pos[i]
        if pos >= 0:
            row[OWN_ACCEPTED] = min(math.log1p(accepted_values[pos, 0]) / _LOG4, 1.0)
        pos = own_pos[i]
        if pos < 0:
            if group_total > 0:
                row[VARIETY_NEW] = variety
            continue
        recent, own, trend = values[pos, 0], values[pos, 1], values[pos, 2]
        row[OWN_HISTORY] = min(math.log1p(own) / _LOG11, 1.0)
        if group_total > 0:
            row[OWN_SHARE] = own / group_total
            row[OWN_COUNT] = math.log1p(own) / math.log1p(group_top_count)
            row[OWN_RECENT] = recent / group_top_weight
            row[OWN_TREND] = min(math.log1p(trend * 4.0) / _LOG5, 1.0)
            if own > 0:
                row[OWN_LOYAL] = 1.0 - variety
            else:
                row[VARIETY_NEW] = variety
    a, b = np.searchsorted(items, parent[0]), np.searchsorted(items, parent[1])
    if a == b:
        return
    mine, mine_weights = items[a:b], weights[a:b, 0].astype(np.float64)
    # the customer's weight per brand in the category: sorted brand codes, one binary search per candidate
    codes = brand[mine]
    order = np.argsort(codes, kind="mergesort")
    brands, brand_weight = codes[order], mine_weights[order]
    for j in range(1, len(brands)):
        if brands[j] == brands[j - 1]:
            brand_weight[j] += brand_weight[j - 1]  # running sum: the last of a run holds the brand's total
    total = mine_weights.sum()
    in_group = (mine >= group[0]) & (mine < group[1])
    usual, usual_weights = (mine[in_group], mine_weights[in_group]) if in_group.any() else (mine, mine_weights)
    size = _closeness(log_size, usual, usual_weights, log_size[candidates])
    price = _closeness(log_price, usual, usual_weights, log_price[candidates])
    for i in range(n):
        j = np.searchsorted(brands, brand[candidates[i]], side="right") - 1
        if j >= 0 and brands[j] == brand[candidates[i]]:
            out[i, BRAND_AFFINITY] = brand_weight[j] / total
        out[i, SIZE_AFFINITY] = size[i]
        out[i, PRICE_AFFINITY] = price[i]
