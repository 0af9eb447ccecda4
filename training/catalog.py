"""Catalog order, cold-start embeddings, and adding new items to a trained model without retraining.

A new item (in the catalog, no events yet) gets an embedding from its metadata: the mean direction of the
items with events of its brand in its substitution group, else of its group. So it is found by the group's
similarity search, can be offered as a substitute, and gets substitutes itself; answers about it say so
(``SubstituteList.metadata_based``). ``add_items`` appends such items to an existing model in seconds.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.domain.schema import CATALOG_COLUMNS, DataValidationError, attribute_columns
from recsys.domain.sizes import parse_package_sizes
from recsys.model import artifact
from recsys.model.data import GROUP_KEYS, ITEM_COLUMNS, PAIR_SIGNALS, ModelData

_ORDER = [*GROUP_KEYS, "n_customers", "item_id"]


def sort_items(items: pd.DataFrame) -> pd.DataFrame:
    """Group order: department, category, product type, then most customers first (stable, by id)."""
    ordered = items.sort_values(_ORDER, ascending=[True, True, True, False, True], kind="mergesort")
    return ordered[[*ITEM_COLUMNS, *attribute_columns(ordered)]].reset_index(drop=True)


def impute_cold_factors(items: pd.DataFrame, factors: np.ndarray) -> np.ndarray:
    """Unit vectors for items without events: the normalised mean of their (group, brand)'s items with
    events, else of their group's; zero where the group has none. Items with events are left as they are."""
    cold = items["n_customers"].to_numpy() == 0
    if not cold.any() or cold.all():
        return factors
    factors = factors.copy()
    warm, todo = ~cold, cold.copy()
    for columns in ([*GROUP_KEYS, "brand"], list(GROUP_KEYS)):  # the brand's items in the group, else the group's
        code = pd.MultiIndex.from_frame(items[columns].astype(str)).factorize()[0]
        sums = np.zeros((code.max() + 1, factors.shape[1]), dtype=np.float64)
        np.add.at(sums, code[warm], factors[warm])
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        means = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
        fill = todo & (norms[code, 0] > 0)
        factors[fill] = means[code[fill]].astype(np.float32)
        todo &= ~fill
    return factors


def add_items(model_dir: Path, catalog: pd.DataFrame, out_dir: Path, make_current: bool = True
              ) -> tuple[Path, int]:
    """A new model version = ``model_dir`` plus the catalog's items it does not know (metadata only).
    Returns the new model's path and the number of items added; nothing is written when none is new."""
    missing = [c for c in CATALOG_COLUMNS if c not in catalog.columns]
    if missing:
        raise DataValidationError(f"catalog is missing columns: {', '.join(missing)}")
    manifest = artifact.read_manifest(model_dir, verify=True)
    model = ModelData.load(model_dir)
    new = catalog.drop_duplicates("item_id")
    new = new[~new["item_id"].astype(str).isin(model.items["item_id"].astype(str))].reset_index(drop=True)
    if new.empty:
        return Path(model_dir), 0
    new = pd.concat([new.astype({"item_id": str}), parse_package_sizes(new["package_size"])], axis=1)
    price = pd.to_numeric(new["price"], errors="coerce") if "price" in new.columns else np.nan
    new = new.assign(price=price, popularity=0.0, trend=0.0, n_customers=0, trial_trend=0.0, days_on_sale=np.nan,
                     package_size=new["package_size"].astype("string"),
                     private_label=new["private_label"].astype(bool))
    # an attribute only the old items or only the new ones have is NA on the others
    combined = pd.concat([model.items, new[[*ITEM_COLUMNS, *attribute_columns(new)]]], ignore_index=True)
    items = sort_items(combined)
    n = len(items)
    old_to_new = pd.Index(items["item_id"]).get_indexer(combined["item_id"])  # row in combined -> new row

    def items_x_items(m: sp.csr_matrix) -> sp.csr_matrix:
        coo = m.tocoo()
        moved = sp.csr_matrix((coo.data, (old_to_new[coo.row], old_to_new[coo.col])), shape=(n, n))
        moved.sort_indices()
        return moved

    def rows_x_items(*shared: sp.csr_matrix) -> list[sp.csr_matrix]:
        """Remap the columns of matrices that share one sparsity structure, keeping it shared."""
        first = shared[0]
        rows = np.repeat(np.arange(first.shape[0]), np.diff(first.indptr))
        columns = old_to_new[first.indices]
        order = np.lexsort((columns, rows))
        return [sp.csr_matrix((m.data[order], columns[order].astype(np.int32), first.indptr),
                              shape=(first.shape[0], n)) for m in shared]

    factors = np.zeros((n, model.factors.shape[1]), dtype=np.float32)
    factors[old_to_new[:model.n_items]] = model.factors
    factors = impute_cold_factors(items, factors)
    index = faiss.IndexFlatIP(factors.shape[1])
    index.add(factors)
    weight, count, recent = rows_x_items(model.customer_weight, model.customer_count, model.customer_recent)
    (store_items,), (accepted,) = rows_x_items(model.store_items), rows_x_items(model.customer_accepted)
    updated = ModelData(
        items=items, factors=factors,
        **{name: items_x_items(getattr(model, name)) for name in PAIR_SIGNALS},
        customers=model.customers, stores=model.stores, store_items=store_items, home_store=model.home_store,
        customer_stats=model.customer_stats, customer_weight=weight, customer_count=count, customer_recent=recent,
        customer_accepted=accepted, index=index,
        reranker=model.reranker,  # the ranker stays: features of the new items are computed the same way
        assortment=model.assortment.moved(old_to_new[:model.n_items], n),
    )
    updated_manifest = manifest.model_copy(update={
        "version": artifact.new_version(), "files": {}, "counts": {**manifest.counts, "items": n},
        "catalog_updates": [*manifest.catalog_updates, {"from": manifest.version, "added": len(new)}],
        "created_at": pd.Timestamp.now(tz="UTC").isoformat()})
    path = artifact.write_model(out_dir, updated.save, updated_manifest, make_current=make_current)
    return path, len(new)


