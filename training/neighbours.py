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
    key = pd.DataFrame({"row": rows, "group": group_of[item_idx], "item": item_idx}).drop_duplicates()
    basket = pd.factorize(pd.MultiIndex.from_arrays([key["row"], key["group"]]))[0]
    matrix = sp.csr_matrix((np.ones(len(key), np.float32), (basket, key["item"].to_numpy())),
                           shape=(int(basket.max()) + 1, n_items))
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

    For each customer and group, the usual item X is the one bought in the most baskets (at least 2). A basket
    with items of the group but without X is a switch to those items. Returns, per X:
    ``switch`` = share of the switch baskets that held Y, and ``trial`` = share of the customers loyal to X
    who bought Y at all (what they try besides X). Shrunk towards 0 for small counts.
    """
    frame = pd.DataFrame({"c": customers, "b": baskets, "i": item_idx, "g": group_of[item_idx]}).drop_duplicates()
    per_item = frame.groupby(["c", "g", "i"], sort=False).size().rename("n").reset_index()
    per_item = per_item.sort_values(["c", "g", "n", "i"], ascending=[True, True, False, True])
    usual = per_item.drop_duplicates(["c", "g"])
    usual = usual.loc[usual["n"] >= 2, ["c", "g", "i"]].rename(columns={"i": "x"})
    bought = per_item.merge(usual, on=["c", "g"])
    bought = bought[bought["i"] != bought["x"]]
    loyal = usual.groupby("x").size()
    trial_counts = bought.groupby(["x", "i"]).size().rename("n").reset_index()
    trial_values = trial_counts["n"] / loyal.reindex(trial_counts["x"]).to_numpy() * (
        trial_counts["n"] / (trial_counts["n"] + 2.0))

    lines = frame.merge(usual, on=["c", "g"])
    has_x = (lines["i"] == lines["x"]).groupby([lines["c"], lines["b"], lines["g"]]).transform("any")
    switched = lines[~has_x]
    switch_counts = switched.groupby(["x", "i"]).size().rename("n").reset_index()
    switch_total = switched.drop_duplicates(["c", "b", "g"]).groupby("x").size()
    switch_values = switch_counts["n"] / switch_total.reindex(switch_counts["x"]).to_numpy() * (
        switch_counts["n"] / (switch_counts["n"] + 2.0))

    def matrix(pairs: pd.DataFrame, values: pd.Series) -> sp.csr_matrix:
        return _top_per_row(pairs["x"].to_numpy(np.int64), pairs["i"].to_numpy(np.int64),
                            values.to_numpy(np.float32), n_items, max_neighbours)

    return matrix(switch_counts, switch_values), matrix(trial_counts, trial_values)


def _top_per_row(row: np.ndarray, col: np.ndarray, value: np.ndarray, n: int, top: int) -> sp.csr_matrix:
    order = np.lexsort((-value, row))
    row, col, value = row[order], col[order], value[order]
    starts = np.searchsorted(row, np.arange(n))
    rank = np.arange(len(row)) - starts[row]
    keep = rank < top
    result = sp.csr_matrix((value[keep], (row[keep], col[keep])), shape=(n, n), dtype=np.float32)
    result.sort_indices()
    return result
