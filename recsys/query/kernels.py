"""The query path's compiled kernels and the feature layout they read and write: the only module that uses numba.

Why one module: numba caches a compiled kernel beside its source and recompiles it when that file changes, but
not when a kernel it calls, or a constant it reads, lives in another file that changed. With every kernel and
every constant they read here, any change to them compiles everything afresh, and importing the package
configures nothing (numba's default cache, ``__pycache__`` beside this file).

The kernels take bundles of arrays instead of long argument lists: :class:`SparseRows` for several
sparse matrices on one structure, :class:`ItemColumns` for the per-item columns, :class:`FeatureArrays` for all
that the candidate features read, :class:`ScorerArrays` for the scorer's weights and trees. They are named tuples on
the Python side; the query path hands them over as plain tuples (:func:`plain`), which the kernels unpack into
named locals (in the bundle's field order).
"""

from __future__ import annotations

import enum
import math
from typing import Any, Final, NamedTuple, TypeVar, cast

import numba
import numpy as np
import scipy.sparse as sp

BundleT = TypeVar("BundleT", bound=tuple[Any, ...])


class Feature(enum.IntEnum):
    """One candidate's ranking features, in column order; each scaled to roughly [0, 1] (``widened`` is an
    indicator)."""

    similarity = 0  # cosine of the ALS item embeddings
    bought_instead = 1  # same-group items bought by the same customers (switching)
    viewed_together = 2  # same-group items viewed/carted in one session
    switched_to = 3  # share of baskets without X (from customers loyal to X) that held the candidate
    tried = 4  # share of customers loyal to X who also bought the candidate
    popularity = 5  # distinct customers, relative to the group's most popular item
    trend = 6  # recent (3-week half-life) demand, relative to the group's top
    store_popularity = 7  # demand at the queried store (else the customer's usual store), relative to its top
    size_match = 8  # exp(-|log size ratio|) when the unit families agree, else 0
    price_match = 9  # exp(-|log price ratio|)
    same_brand = 10
    same_private_label = 11
    own_history = 12  # the customer bought this candidate before (log count, saturating at 10)
    own_count = 13  # log count relative to the customer's most-bought item in X's group
    own_recent = 14  # recency-weighted purchases of the candidate, relative to the group's top
    own_trend = 15  # the customer's purchases of the candidate in the last weeks (3-week half-life)
    own_loyal = 16  # bought before x how loyal (not varied) the customer is in X's group
    own_share = 17  # the candidate's share of the customer's purchases in X's group
    variety_new = 18  # never bought by the customer x how varied the customer's purchases in X's group are
    brand_affinity = 19  # the customer's share of the candidate's brand in X's category
    size_affinity = 20  # closeness to the customer's usual size in the category
    price_affinity = 21  # closeness to the customer's usual price level in the category
    widened = 22  # candidate comes from the parent category, not X's own group
    accepted_instead = 23  # substitution feedback for X -> candidate: (accepted - rejected) / (all + 1), in [-1, 1]
    own_accepted = 24  # the customer accepted this candidate as a substitute before (log count, saturating at 3)
    trial_trend = 25  # recent first purchases (customers trying the item), relative to the group's top
    launch_recency = 26  # exp(-days since the item's first event / 30): a recent launch


#: the feature names in column order (the manifest's and LightGBM's names)
FEATURES: Final[tuple[str, ...]] = tuple(feature.name for feature in Feature)
N_FEATURES: Final[int] = len(Feature)
#: the item-pair matrices' columns in the engine's :class:`SparseRows` order (``recsys.model.data.PAIR_SIGNALS``, each
#: matrix named after its feature)
PAIR_FEATURES: Final[tuple[int, ...]] = tuple(int(f) for f in (
    Feature.bought_instead, Feature.viewed_together, Feature.switched_to, Feature.tried, Feature.accepted_instead))
#: the candidate's own features, in :attr:`ItemColumns.features` column order
ITEM_FEATURES: Final[tuple[int, ...]] = tuple(int(f) for f in (
    Feature.popularity, Feature.trend, Feature.trial_trend, Feature.launch_recency))

#: ranked candidates considered per requested result, so dropping near-duplicates can still fill k; also the
#: re-ranker's shortlist
NEAR_DUPLICATE_POOL: Final[int] = 4
#: most pack sizes of one brand's product in one answer (more crowd the list; fewer hide real switches)
MAX_PACK_SIZES: Final[int] = 2
#: up to this many positions, best_positions keeps a sorted buffer in one pass; beyond, it sorts
_BUFFERED_K: Final[int] = 64
_LOG4, _LOG11, _LOG5 = math.log1p(3.0), math.log1p(10.0), math.log1p(4.0)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
# the lowest set bit's position: (m & -m) * de Bruijn constant >> 58 indexes this table
_DE_BRUIJN = 0x022FDD63CC95386D
LOWEST_BIT: Final[np.ndarray] = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    LOWEST_BIT[(((1 << _bit) * _DE_BRUIJN) & (2**64 - 1)) >> 58] = _bit


class ItemColumns(NamedTuple):
    """Per item, what the candidate features read (codes -1: unknown; logs NaN: unknown)."""

    family: np.ndarray  # size family code
    log_size: np.ndarray  # float32
    log_price: np.ndarray  # float32
    brand: np.ndarray  # brand code
    private_label: np.ndarray  # bool
    features: np.ndarray  # (n_items, len(ITEM_FEATURES)) float32


class Trees(NamedTuple):
    """A forest arranged for QuickScorer (see :class:`recsys.query.trees.Forest`)."""

    feature_ptr: np.ndarray  # int64, num_features + 1: feature f's nodes are [feature_ptr[f], feature_ptr[f + 1])
    threshold: np.ndarray  # float64 per node
    tree: np.ndarray  # int64 per node
    mask: np.ndarray  # uint64 per node: the tree's leaves that survive a row going right of the node
    leaf_offset: np.ndarray  # int64 per tree: where its leaves start in leaf_value
    leaf_value: np.ndarray  # float64, each tree's leaves left to right, shrinkage included


class ScorerArrays(NamedTuple):
    """What scoring reads (see :class:`recsys.query.ranking.Scorer`)."""

    weights: np.ndarray  # float64 per feature
    history_weights: np.ndarray  # float64 per feature, for candidates the customer bought before
    history_bias: float
    min_score: float
    new_item_bias: float
    fixed_weights: np.ndarray  # float64 per feature
    trees: Trees
    new_item_shift: float  # added to the final score of candidates the customer never bought (an intent's)


class FeatureArrays(NamedTuple):
    """Everything :func:`candidate_features` reads besides the query, built once per model."""

    items: ItemColumns
    pairs: SparseRows  # item x item: PAIR_FEATURES' columns
    stores: SparseRows  # store x item: recency-weighted purchases
    customers: SparseRows  # customer x item: weight, count, recent weight
    accepted: SparseRows  # customer x item: accepted substitutions


def plain(bundle: BundleT) -> BundleT:
    """A bundle as the query path passes it to the kernels: plain tuples all the way down. numba types a plain
    tuple of arrays in compiled code (a call costs about 0.3 µs) but a named tuple in Python (0.8 µs), and a
    query passes several; the kernels unpack their bundles positionally either way. The result has the bundle's
    fields in the bundle's order, so it is typed as the bundle: the kernels' signatures name what they read."""
    return cast(BundleT, tuple(plain(value) if isinstance(value, tuple) else value for value in bundle))


# -- sparse rows ---------------------------------------------------------------------------------------------
class SparseRows(NamedTuple):
    """Several sparse matrices of one shape on one sorted CSR structure (the union of theirs), so that one
    search over a row's indices serves them all: ``values[:, j]`` holds matrix ``j`` (0 where it has none).
    A named tuple; the compiled kernels take it as a plain tuple and unpack it."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray  # (nnz, number of matrices), float32

    @classmethod
    def of(cls, *matrices: sp.csr_matrix) -> SparseRows:
        n_rows, n_cols = matrices[0].shape
        keys = [np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(m.indptr)) * n_cols + m.indices
                for m in matrices]
        union = np.unique(np.concatenate(keys))
        values = np.zeros((len(union), len(matrices)), dtype=np.float32)
        for j, (matrix, key) in enumerate(zip(matrices, keys, strict=True)):
            values[np.searchsorted(union, key), j] = matrix.data
        indptr = np.searchsorted(union // n_cols, np.arange(n_rows + 1))
        return cls(indptr, union % n_cols, values)  # int64, as candidate ids: searchsorted then copies nothing

    def row(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The row's column indices (sorted) and their values."""
        start, end = self.indptr[row], self.indptr[row + 1]
        return self.indices[start:end], self.values[start:end]

    def lookup(self, row: int, columns: np.ndarray) -> np.ndarray:
        """Values at (``row``, ``columns``): shape (len(columns), number of matrices), 0 where absent."""
        return lookup(plain(self), row, columns)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def positions(rows: SparseRows, row: int, columns: np.ndarray, ascending: bool) -> np.ndarray:
    """Where each (row, column) is stored in a CSR structure, -1 if absent. Ascending ``columns`` (a group's
    candidates usually are) are merged with the row in one pass; others take a binary search each."""
    indptr, indices, _ = rows
    out = np.full(len(columns), -1, dtype=np.int64)
    start, end = indptr[row], indptr[row + 1]
    if start == end or len(columns) == 0:
        return out
    if ascending:
        pos = start + np.searchsorted(indices[start:end], columns[0])
        for i in range(len(columns)):
            while pos < end and indices[pos] < columns[i]:
                pos += 1
            if pos < end and indices[pos] == columns[i]:
                out[i] = pos
        return out
    row_indices = indices[start:end]
    for i in range(len(columns)):
        pos = np.searchsorted(row_indices, columns[i])
        if pos < len(row_indices) and row_indices[pos] == columns[i]:
            out[i] = start + pos
    return out


@numba.njit(cache=True, nogil=True)
def lookup(rows: SparseRows, row: int, columns: np.ndarray) -> np.ndarray:
    """Values at (``row``, ``columns``): shape (len(columns), number of matrices), 0 where absent."""
    pos = positions(rows, row, columns, False)
    _, _, values = rows
    out = np.zeros((len(columns), values.shape[1]), dtype=values.dtype)
    for i in range(len(columns)):
        if pos[i] >= 0:
            out[i] = values[pos[i]]
    return out


# -- candidate features --------------------------------------------------------------------------------------
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
def candidate_features(x: int, candidates: np.ndarray, similarity: np.ndarray, widened: np.ndarray,
                       arrays: FeatureArrays, store_row: int, customer_row: int, group: tuple[int, int],
                       parent: tuple[int, int]) -> np.ndarray:
    """(len(candidates), N_FEATURES) float32 rows for item ``x``. ``store_row``/``customer_row`` -1: none;
    ``group``/``parent``: X's index ranges; customer values: weight, count, recent weight."""
    items, pairs, stores, customers, accepted = arrays
    family, log_size, log_price, brand, private_label, item_features = items
    _, _, pair_values = pairs
    _, _, store_values = stores
    n = len(candidates)
    out = np.zeros((n, N_FEATURES), dtype=np.float32)
    sold = np.zeros(n)
    ascending = True
    for i in range(1, n):
        ascending &= candidates[i - 1] < candidates[i]
    pair_pos = positions(pairs, x, candidates, ascending)
    store_pos = (positions(stores, store_row, candidates, ascending) if store_row >= 0
                 else np.full(n, -1, dtype=np.int64))
    for i in range(n):
        c = candidates[i]
        row = out[i]
        row[Feature.similarity] = min(max(similarity[i], 0.0), 1.0)
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
            row[Feature.size_match] = np.exp(-np.abs(log_size[c] - log_size[x]))
        if not np.isnan(log_price[c] - log_price[x]):
            row[Feature.price_match] = np.exp(-np.abs(log_price[c] - log_price[x]))
        row[Feature.same_brand] = brand[c] == brand[x]
        row[Feature.same_private_label] = private_label[c] == private_label[x]
        row[Feature.widened] = widened[i]
    top = sold.max() if n else 0.0
    if top > 0:
        for i in range(n):
            out[i, Feature.store_popularity] = math.log1p(sold[i]) / math.log1p(top)
    if customer_row >= 0:
        _personal(out, candidates, ascending, customer_row, group, parent, customers, accepted, items)
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _personal(out: np.ndarray, candidates: np.ndarray, ascending: bool, customer_row: int, group: tuple[int, int],
              parent: tuple[int, int], customers: SparseRows, accepted: SparseRows, item_columns: ItemColumns
              ) -> None:
    _, log_size, log_price, brand, _, _ = item_columns
    n = len(candidates)
    indptr, indices, values = customers
    _, _, accepted_values = accepted
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
    accepted_pos = positions(accepted, customer_row, candidates, ascending)
    own_pos = positions(customers, customer_row, candidates, ascending)
    for i in range(n):
        row = out[i]
        pos = accepted_pos[i]
        if pos >= 0:
            row[Feature.own_accepted] = min(math.log1p(accepted_values[pos, 0]) / _LOG4, 1.0)
        pos = own_pos[i]
        if pos < 0:
            if group_total > 0:
                row[Feature.variety_new] = variety
            continue
        recent, own, trend = values[pos, 0], values[pos, 1], values[pos, 2]
        row[Feature.own_history] = min(math.log1p(own) / _LOG11, 1.0)
        if group_total > 0:
            row[Feature.own_share] = own / group_total
            row[Feature.own_count] = math.log1p(own) / math.log1p(group_top_count)
            row[Feature.own_recent] = recent / group_top_weight
            row[Feature.own_trend] = min(math.log1p(trend * 4.0) / _LOG5, 1.0)
            if own > 0:
                row[Feature.own_loyal] = 1.0 - variety
            else:
                row[Feature.variety_new] = variety
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
            out[i, Feature.brand_affinity] = brand_weight[j] / total
        out[i, Feature.size_affinity] = size[i]
        out[i, Feature.price_affinity] = price[i]


# -- scoring -------------------------------------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def linear_scores(features: np.ndarray, ranker: ScorerArrays) -> np.ndarray:
    """Stage 1 per row, summed in float64: ``row @ weights``, plus ``row @ history_weights + history_bias``
    where the customer bought the candidate (``own_history`` > 0)."""
    weights, history_weights, history_bias, _, _, _, _, _ = ranker
    out = np.empty(len(features))
    for i in range(len(features)):
        row = features[i]
        score = 0.0
        for j in range(len(row)):
            score += np.float64(row[j]) * weights[j]
        if row[Feature.own_history] > 0:
            score += history_bias
            for j in range(len(row)):
                score += np.float64(row[j]) * history_weights[j]
        out[i] = score
    return out


@numba.njit(cache=True, nogil=True)
def rescore(features: np.ndarray, linear: np.ndarray, known: np.ndarray, shortlist: int, rerank: bool,
            ranker: ScorerArrays) -> np.ndarray:
    """Final scores from the ``linear`` ones. Without ``rerank``: the linear score where it is at least
    ``min_score``, else -inf. With it: the trees' score (plus the new-item bias and fixed weights) of the
    ``shortlist`` rows with the best linear scores at or above ``min_score``, -inf elsewhere. Either way,
    candidates the customer never bought get the ranker's ``new_item_shift`` (an intent's; 0 for balanced,
    which leaves every score as it was) after the cut-off and the shortlist are decided. Rows whose
    ``known`` score is finite (scored before, for a narrower shortlist) keep it: a row's tree score does not
    depend on the other rows."""
    _, _, _, min_score, new_item_bias, fixed_weights, trees, new_item_shift = ranker
    eligible = np.where(linear >= min_score, linear, -np.inf)
    if not rerank:
        if new_item_shift != 0.0:
            for i in range(len(eligible)):
                if eligible[i] > -np.inf and features[i, Feature.own_history] <= 0:
                    eligible[i] += new_item_shift
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
        if values[Feature.own_history] <= 0:
            extra[i] += new_item_bias + new_item_shift
    final[rows] = score_columns(columns, trees) + extra
    return final


@numba.njit(cache=True, nogil=True)
def score_columns(columns: np.ndarray, trees: Trees) -> np.ndarray:
    """Raw scores of rows given as float64 columns, shape (num_features, rows), NaN already read as 0
    (QuickScorer, see :mod:`recsys.query.trees`). Each node updates all rows at once, branch-free, which the compiler
    vectorises."""
    feature_ptr, threshold, tree, mask, leaf_offset, leaf_value = trees
    n = columns.shape[1]
    alive = np.full((len(leaf_offset), n), _ALL, dtype=np.uint64)  # per tree and row: the leaves still possible
    for f in range(len(feature_ptr) - 1):
        values = columns[f]
        top = values.max() if n else -np.inf
        for j in range(feature_ptr[f], feature_ptr[f + 1]):
            limit, lost = threshold[j], mask[j]
            if limit >= top:  # thresholds ascend: no row goes right of this node or of the feature's next ones
                break
            leaves = alive[tree[j]]
            for i in range(n):
                leaves[i] &= lost if values[i] > limit else _ALL
    out = np.zeros(n)
    for t in range(len(leaf_offset)):  # LightGBM's order of summation
        for i in range(n):
            m = alive[t, i]
            lowest = (m & (~m + np.uint64(1))) * np.uint64(_DE_BRUIJN)  # wraps around, as intended
            out[i] += leaf_value[leaf_offset[t] + LOWEST_BIT[lowest >> np.uint64(58)]]
    return out


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


# -- hard rules and the answer's selection -------------------------------------------------------------------
@numba.njit(cache=True, nogil=True)
def rule_mask(candidates: np.ndarray, x: int, out_of_stock: np.ndarray, excluded: np.ndarray,
              filtered: np.ndarray) -> np.ndarray:
    """Which ``candidates`` are not ``x``, not ``out_of_stock`` (per item; empty: none known), not ``excluded``
    (sorted item indices) and pass ``filtered`` (per candidate; empty: no filters)."""
    keep = np.empty(len(candidates), dtype=np.bool_)
    for i in range(len(candidates)):
        c = candidates[i]
        passes = c != x and (len(out_of_stock) == 0 or not out_of_stock[c]) and (len(filtered) == 0 or filtered[i])
        if passes and len(excluded):
            j = np.searchsorted(excluded, c)
            passes = j == len(excluded) or excluded[j] != c
        keep[i] = passes
    return keep


@numba.njit(cache=True, nogil=True)
def widen(candidates: np.ndarray, similarity: np.ndarray, wide: np.ndarray, wide_similarity: np.ndarray, lo: int,
          hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X's group's ``candidates`` followed by the parent category's (``wide``) outside the group's range [lo, hi),
    their similarities, and which are widened: one pass where numpy's masks and concatenations took six."""
    n = len(candidates)
    outside = 0
    for c in wide:
        outside += c < lo or c >= hi
    items = np.empty(n + outside, dtype=candidates.dtype)
    similarities = np.empty(n + outside, dtype=similarity.dtype)
    widened = np.zeros(n + outside, dtype=np.bool_)
    items[:n] = candidates
    similarities[:n] = similarity
    j = n
    for i in range(len(wide)):
        c = wide[i]
        if c < lo or c >= hi:
            items[j], similarities[j], widened[j] = c, wide_similarity[i], True
            j += 1
    return items, similarities, widened


@numba.njit(cache=True, nogil=True)
def _first_distinct(brand: np.ndarray, group: np.ndarray, size: np.ndarray, bought: np.ndarray, k: int,
                    max_sizes: int) -> np.ndarray:
    """Positions of the first ``k`` entries, skipping an entry whose (brand, group) already shows ``max_sizes``
    sizes other than its own, unless ``bought``. Each entry is compared with the kept ones (at most ``k``)."""
    keep = np.empty(min(k, len(brand)), dtype=np.int64)
    new_size = np.empty(len(keep), dtype=np.bool_)  # kept entry j was its product's first of its size
    kept = 0
    for i in range(len(brand)):
        sizes = 0
        shown = False
        for j in range(kept):
            if brand[keep[j]] == brand[i] and group[keep[j]] == group[i]:
                sizes += new_size[j]
                shown |= size[keep[j]] == size[i]
        if sizes >= max_sizes and not shown and not bought[i]:
            continue
        keep[kept] = i
        new_size[kept] = not shown
        kept += 1
        if kept == len(keep):
            break
    return keep[:kept]


@numba.njit(cache=True, nogil=True)
def select(features: np.ndarray, candidates: np.ndarray, brand: np.ndarray, group: np.ndarray,
           size_bucket: np.ndarray, k: int, size_alternatives: bool, rerank: bool, ranker: ScorerArrays,
           bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The answer's positions among ``candidates`` and all candidates' scores (see
    :meth:`recsys.query.engine.SubstituteEngine.select`); ``bias``: per candidate, a change of the final score
    of those that have one (merchandising rules; empty: none)."""
    pool = NEAR_DUPLICATE_POOL * k
    linear = linear_scores(features, ranker)
    base = rescore(features, linear, np.full(len(linear), -np.inf), pool, rerank, ranker)
    scored = _with_bias(base, bias)
    ranked = best_positions(scored, pool)
    distinct = _distinct(ranked, candidates, features, brand, group, size_bucket, k, size_alternatives)
    if len(distinct) < k and len(ranked) == pool:  # near-duplicates crowded the pool: rank a wider one
        base = rescore(features, linear, base, NEAR_DUPLICATE_POOL * pool, rerank, ranker)
        scored = _with_bias(base, bias)
        ranked = best_positions(scored, len(scored))
        distinct = _distinct(ranked, candidates, features, brand, group, size_bucket, k, size_alternatives)
    return distinct, scored


@numba.njit(cache=True, nogil=True)
def _with_bias(scores: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``scores`` with ``bias`` added where a score is final (not -inf: under the cut-off or off the shortlist)."""
    if len(bias) == 0:
        return scores
    shifted = scores.copy()
    for i in range(len(scores)):
        if scores[i] > -np.inf:
            shifted[i] += bias[i]
    return shifted


@numba.njit(cache=True, nogil=True)
def _distinct(ranked: np.ndarray, candidates: np.ndarray, features: np.ndarray, brand: np.ndarray,
              group: np.ndarray, size_bucket: np.ndarray, k: int, size_alternatives: bool) -> np.ndarray:
    """The first ``k`` of ``ranked`` without near-duplicates (see
    :meth:`recsys.query.engine.SubstituteEngine.select`)."""
    if size_alternatives:
        return ranked[:k]
    items = candidates[ranked]
    bought = np.empty(len(ranked), dtype=np.bool_)
    for i in range(len(ranked)):
        bought[i] = features[ranked[i], Feature.own_history] > 0
    distinct: np.ndarray = ranked[_first_distinct(brand[items], group[items], size_bucket[items], bought, k,
                                                  MAX_PACK_SIZES)]
    return distinct
