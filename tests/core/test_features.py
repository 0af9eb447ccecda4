"""The compiled feature kernel (recsys.query.kernels.candidate_features) against the features' definitions, written
out in numpy over the model's scipy matrices, on personal and anonymous queries of the session's model."""

import math

import numpy as np

from recsys import SubstituteEngine
from recsys.model.data import PAIR_SIGNALS
from recsys.query.kernels import FEATURES, positions


def _reference(engine: SubstituteEngine, x: int, cand: np.ndarray, similarity: np.ndarray, widened: np.ndarray,
               customer: int | None, store: int | None) -> np.ndarray:
    model = engine.model
    expected = {name: np.zeros(len(cand)) for name in FEATURES}
    expected["similarity"] = np.clip(similarity, 0, 1)
    for name, matrix in ((name, getattr(model, name)) for name in PAIR_SIGNALS):
        expected[name] = matrix[x].toarray()[0, cand]
    group = model.group_ptr[model.group_of]  # each item's group start
    for name, column in (("popularity", "n_customers"), ("trend", "trend"), ("trial_trend", "trial_trend")):
        values = model.items[column].to_numpy(np.float64)
        top = np.array([values[group[c]:model.group_ptr[model.group_of[c] + 1]].max() for c in cand])
        expected[name] = np.where(top > 0, np.log1p(values[cand]) / np.log1p(np.maximum(top, 1e-300)), 0)
    expected["launch_recency"] = np.nan_to_num(np.exp(-model.items["days_on_sale"].to_numpy()[cand] / 30))
    if store is not None:
        sold = model.store_items[store].toarray()[0, cand]
        if sold.max() > 0:
            expected["store_popularity"] = np.log1p(sold) / np.log1p(sold.max())
    table = engine.item_table
    families, log_size, log_price = table.family_codes, table.log_size, table.log_price
    same_family = (families[cand] == families[x]) & (families[x] >= 0)
    expected["size_match"] = np.where(same_family, np.nan_to_num(np.exp(-np.abs(log_size[cand] - log_size[x]))), 0)
    expected["price_match"] = np.nan_to_num(np.exp(-np.abs(log_price[cand] - log_price[x])))
    expected["same_brand"] = engine.item_table.brand_codes[cand] == engine.item_table.brand_codes[x]
    expected["same_private_label"] = engine.item_table.private_label[cand] == engine.item_table.private_label[x]
    expected["widened"] = widened
    if customer is not None:
        lo, hi = engine.group_range(x)
        parent = model.parent_of[x]
        plo, phi = model.parent_ptr[parent], model.parent_ptr[parent + 1]
        weight = model.customer_weight[customer].toarray()[0]
        count = model.customer_count[customer].toarray()[0]
        recent = model.customer_recent[customer].toarray()[0]
        expected["own_accepted"] = np.minimum(np.log1p(model.customer_accepted[customer].toarray()[0, cand])
                                              / math.log1p(3), 1)
        own = count[cand]
        expected["own_history"] = np.minimum(np.log1p(own) / math.log1p(10), 1)
        in_group = count[lo:hi]
        if in_group.sum() > 0:
            variety = (in_group > 0).sum() / in_group.sum()
            expected["own_share"] = own / in_group.sum()
            expected["own_count"] = np.log1p(own) / np.log1p(in_group.max())
            expected["own_recent"] = weight[cand] / weight[lo:hi].max()
            expected["own_trend"] = np.minimum(np.log1p(recent[cand] * 4) / math.log1p(4), 1)
            expected["variety_new"] = (own == 0) * variety
            expected["own_loyal"] = (own > 0) * (1 - variety)
        mine = np.flatnonzero(weight[plo:phi]) + plo
        if len(mine):
            brands = engine.item_table.brand_codes
            w = weight[mine]
            expected["brand_affinity"] = np.array([w[brands[mine] == brands[c]].sum() for c in cand]) / w.sum()
            usual = mine[(mine >= lo) & (mine < hi)] if ((mine >= lo) & (mine < hi)).any() else mine
            for name, values in (("size_affinity", log_size), ("price_affinity", log_price)):
                known = usual[~np.isnan(values[usual])]
                if len(known):
                    centre = np.average(values[known], weights=weight[known])
                    expected[name] = np.nan_to_num(np.exp(-np.abs(values[cand] - centre)))
    return np.column_stack([expected[name] for name in FEATURES])


def test_candidate_features_follow_their_definitions(engine: SubstituteEngine) -> None:
    model = engine.model
    counts = model.customer_count
    rng = np.random.default_rng(3)
    checked = personal_with_history = 0
    for customer in rng.choice(len(model.customers), size=40, replace=False).tolist():
        bought = counts.indices[counts.indptr[customer]:counts.indptr[customer + 1]]
        # items the customer bought (history in the group) and random items (mostly none), as a guest too
        for x in [*rng.choice(bought, size=min(3, len(bought)), replace=False).tolist(),
                  int(rng.integers(model.n_items))]:
            for who in (customer, None):
                cand, features, widened = engine.candidates(x, who)
                lo, hi = engine.group_range(x)
                similarity = model.factors[cand] @ model.factors[x]
                store = int(model.home_store[customer]) if who is not None and model.home_store[customer] >= 0 \
                    else None
                expected = _reference(engine, x, cand, similarity, widened, who, store)
                for j, name in enumerate(FEATURES):
                    np.testing.assert_allclose(features[:, j], expected[:, j], rtol=1e-5, atol=1e-6,
                                               err_msg=f"{name} of item {x}, customer {who}")
                checked += len(cand)
                personal_with_history += who is not None and bool((features[:, FEATURES.index("own_share")] > 0).any())
    assert checked > 1000 and personal_with_history >= 10


def test_positions_merge_and_search_agree_with_scipy(engine: SubstituteEngine) -> None:
    """Stored entries are found by a merge (ascending candidates) or a binary search each (any order)."""
    rows = engine.finder.customer_items
    matrix = engine.model.customer_count
    rng = np.random.default_rng(0)
    for row in rng.choice(len(engine.model.customers), size=30, replace=False).tolist():
        stored = matrix.indices[matrix.indptr[row]:matrix.indptr[row + 1]]
        columns = np.unique(np.concatenate([rng.choice(stored, size=min(5, len(stored)), replace=False),
                                            rng.integers(0, engine.model.n_items, 20)]))
        expected = np.array([matrix[row, c] for c in columns])
        for ascending, order in ((True, np.arange(len(columns))), (False, rng.permutation(len(columns)))):
            pos = positions(rows, row, columns[order], ascending)
            found = np.where(pos >= 0, rows.values[pos, 1], 0)
            np.testing.assert_array_equal(found, expected[order])
            assert (pos >= 0).sum() >= min(5, len(stored))
