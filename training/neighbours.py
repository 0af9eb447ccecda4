"""Item-to-item neighbour signals from baskets: co-occurrence and "bought instead" switching, same group only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp


def cooccurrence(rows: np.ndarray, item_idx: np.ndarray, group_of: np.ndarray, n_items: int,
                  max_neighbours: int, conditional: bool = False) -> sp.csr_matrix:
    """Co-occurrence within (row key, group) baskets, restricted to same-group pairs: cosine, or with
    ``conditional`` P(b | a) = co(a, b) / support(a), which favours the popular switches from a.

    Each (customer or session, group) pair becomes one binary row, so ``M.T @ M`` only pairs items of the
    same group: one sparse product instead of a loop over groups. Keeps the top ``max_neighbours`` per item.
    """
    if len(rows) == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    # each (row, item) once, as one int64 key per event rather than a frame (memory grows with the events)
    key = np.asarray(rows).astype(np.int64)
    key *= n_items
    key += item_idx
    pairs = np.unique(key)
    del key
    row, item = np.divmod(pairs, n_items)
    basket = pd.factorize(row * (int(group_of.max()) + 1) + group_of[item])[0]
    matrix = sp.csr_matrix((np.ones(len(pairs), np.float32), (basket, item)), shape=(int(basket.max()) + 1, n_items))
    co = (matrix.T @ matrix).tocsr()
    support = co.diagonal().astype(np.float32)
    co.setdiag(0)
    co.eliminate_zeros()
    coo = co.tocoo()
    # 1 shared basket between two rare items is noise: shrink towards 0 for small counts
    denominator = support[coo.row] if conditional else np.sqrt(support[coo.row] * support[coo.col])
    values = coo.data / denominator * (coo.data / (coo.data + 2.0))
    return _top_per_row(coo.row, coo.col, values.astype(np.float32), n_items, max_neighbours)


def switching(customers: np.ndarray, baskets: np.ndarray, item_idx: np.ndarray, group_of: np.ndarray,
              n_items: int, max_neighbours: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """What customers actually buy *instead* of their usual item, from purchases.

    For each customer and group, the usual item X is the one bought in the most baskets (at least 2; the lowest
    index on a tie). A basket with items of the group but without X is a switch to those items. Returns, per X:
    ``switch`` = share of the switch baskets that held Y, and ``trial`` = share of the customers loyal to X
    who bought Y at all (what they try besides X). Shrunk towards 0 for small counts.

    Rows, baskets and lines are int64 keys rather than frames: the memory this takes grows with the events.
    """
    empty = sp.csr_matrix((n_items, n_items), dtype=np.float32)
    if len(item_idx) == 0:
        return empty, empty.copy()
    n_groups = int(group_of.max()) + 1
    n_baskets = int(baskets.max()) + 1
    if (int(customers.max()) + 1) * n_baskets * max(n_items, n_groups) >= 2**63:
        raise ValueError("too many customers, baskets and items for 64-bit line keys")
    # each (customer, basket, item) line once
    line = customers.astype(np.int64) * n_baskets
    line += baskets
    line *= n_items
    line += item_idx
    line = np.unique(line)
    customer_basket, item = np.divmod(line, n_items)
    customer = customer_basket // n_baskets
    group = group_of[item].astype(np.int64)
    # baskets per (customer, item); the usual item of each (customer, group): most baskets, then lowest index
    pair, n = np.unique(customer * n_items + item, return_counts=True)
    pair_customer, pair_item = np.divmod(pair, n_items)
    pair_group = group_of[pair_item].astype(np.int64)
    order = np.lexsort((pair_item, -n, pair_group, pair_customer))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (np.diff(pair_customer[order]) != 0) | (np.diff(pair_group[order]) != 0)
    usual = order[first & (n[order] >= 2)]
    usual_key = pair_customer[usual] * n_groups + pair_group[usual]  # ascending: ordered by customer, group
    usual_item = pair_item[usual]
    loyal = np.bincount(usual_item, minlength=n_items)

    def usual_of(customer: np.ndarray, group: np.ndarray) -> np.ndarray:
        """The usual item of each (customer, group), -1 where there is none."""
        key = customer * n_groups + group
        at = np.minimum(np.searchsorted(usual_key, key), max(len(usual_key) - 1, 0))
        found = (usual_key[at] == key) if len(usual_key) else np.zeros(len(key), dtype=bool)
        return np.where(found, usual_item[at] if len(usual_key) else -1, -1)

    # trial: customers loyal to X who bought Y
    x = usual_of(pair_customer, pair_group)
    tried = (x >= 0) & (x != pair_item)
    trial_pair, trial_n = np.unique(x[tried] * n_items + pair_item[tried], return_counts=True)
    trial_x, trial_y = np.divmod(trial_pair, n_items)
    trial_values = trial_n / loyal[trial_x] * (trial_n / (trial_n + 2.0))

    # switch: baskets of a customer's group that hold items of it but not the usual X
    x = usual_of(customer, group)
    basket_group = customer_basket * n_groups + group
    holds_x = np.isin(basket_group, np.unique(basket_group[item == x]))
    switched = (x >= 0) & ~holds_x
    switch_pair, switch_n = np.unique(x[switched] * n_items + item[switched], return_counts=True)
    switch_x, switch_y = np.divmod(switch_pair, n_items)
    switch_baskets = np.unique(basket_group[switched])
    basket_x = usual_of(switch_baskets // n_groups // n_baskets, switch_baskets % n_groups)
    switch_total = np.bincount(basket_x, minlength=n_items)
    switch_values = switch_n / switch_total[switch_x] * (switch_n / (switch_n + 2.0))

    return (_top_per_row(switch_x, switch_y, switch_values.astype(np.float32), n_items, max_neighbours),
            _top_per_row(trial_x, trial_y, trial_values.astype(np.float32), n_items, max_neighbours))


def _top_per_row(row: np.ndarray, col: np.ndarray, value: np.ndarray, n: int, top: int) -> sp.csr_matrix:
    order = np.lexsort((-value, row))
    row, col, value = row[order], col[order], value[order]
    starts = np.searchsorted(row, np.arange(n))
    rank = np.arange(len(row)) - starts[row]
    keep = rank < top
    result = sp.csr_matrix((value[keep], (row[keep], col[keep])), shape=(n, n), dtype=np.float32)
    result.sort_indices()
    return result
