"""What the engine believes about a customer: segment and, per category they buy most, brands, usual size
and price band, from their recency-weighted history."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from recsys.domain.sizes import format_quantity
from recsys.domain.types import BrandShare, CategoryPreference, CustomerProfile, ItemInfo, PriceBand
from recsys.model.data import ModelData
from recsys.query.items import ItemTable
from recsys.query.kernels import SparseRows


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs: Sequence[float]) -> list[float]:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    positions = np.searchsorted(cumulative, np.asarray(qs) * cumulative[-1])
    return [float(values[order][min(p, len(values) - 1)]) for p in positions]


def customer_profile(model: ModelData, table: ItemTable, infos: Sequence[ItemInfo], customer_items: SparseRows, *,
                     model_version: str, customer_id: str, row: int, max_categories: int = 10) -> CustomerProfile:
    """The profile of ``customer_id``, the model's customer ``row``."""
    items, values = customer_items.row(row)
    w, n = values[:, 0].astype(np.float64), values[:, 1]
    parents = model.parent_of[items]
    totals = np.bincount(parents, weights=w, minlength=len(model.parent_ptr) - 1)
    categories = []
    for parent in np.argsort(-totals, kind="stable")[:max_categories]:
        if totals[parent] <= 0:
            break
        mine = parents == parent
        its, iw = items[mine], w[mine]
        brand_weight = pd.Series(iw).groupby(table.brand_names[table.brand_codes[its]]).sum().nlargest(3)
        info = infos[int(its[0])]
        usual_size = None
        families = table.family_codes[its]
        if (families >= 0).any():
            main = np.bincount(families[families >= 0], weights=iw[families >= 0]).argmax()
            sized = families == main
            middle = _weighted_quantiles(table.log_size[its][sized].astype(np.float64), iw[sized], [0.5])[0]
            usual_size = format_quantity(math.exp(middle), str(table.families[int(its[sized][0])]))
        priced = ~np.isnan(table.price[its])
        band = (PriceBand(*(round(v, 2) for v in _weighted_quantiles(table.price[its][priced], iw[priced],
                                                                    [0.25, 0.5, 0.75])))
                if priced.any() else None)
        categories.append(CategoryPreference(
            department=info.department, category=info.category,
            share=round(float(totals[parent] / totals.sum()), 4), purchases=int(n[mine].sum()),
            brands=tuple(BrandShare(str(b), round(float(v / iw.sum()), 4)) for b, v in brand_weight.items()),
            private_label_share=round(float(iw[table.private_label[its]].sum() / iw.sum()), 4),
            usual_size=usual_size, price_band=band,
        ))
    stats = model.customer_stats
    stat = stats.iloc[row] if len(stats.columns) else None
    home = int(model.home_store[row])
    return CustomerProfile(
        customer_id=customer_id, model_version=model_version,
        segment=None if stat is None else str(stat["segment"]),
        recency_days=None if stat is None or pd.isna(stat["recency_days"]) else float(stat["recency_days"]),
        baskets=None if stat is None else int(stat["baskets"]),
        spend=None if stat is None else float(stat["spend"]),
        home_store=str(model.stores[home]) if home >= 0 else None, items=len(items),
        categories=tuple(categories),
    )

