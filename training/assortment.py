"""What each store carries: from the retailer's assortment file, or inferred from sales, and measured.

Without a file, an item is *likely carried* at a store when it sold there within the window (store level) or
anywhere in the chain within the window (chain level). Which level a store gets is decided by measuring: on the
data's last ``holdout_days``, the share of the store's purchase lines whose item the inference from the days
before would have covered. Store level is used only where that coverage reaches ``store_level_coverage``; chain
level elsewhere (and for the online channel and stores without enough purchases to measure). A panel of
households (The Complete Journey) sees only a fraction of what a store sells, so its store-level coverage is low
and every store gets the chain level; a retailer's full sales log can do better, and a file is better still.

The inputs are two small per-(store, item) and per-item frames that every engine computes from its events
(:func:`sales_evidence` here, ``training.spark.aggregates`` on Spark); everything after them is shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.domain.config import AssortmentConfig
from recsys.domain.schema import PURCHASE_TYPES, DataValidationError
from recsys.model.assortment import Assortment
from training.mapping import AssortmentColumns, DataMapping

#: the busiest stores listed one by one in the report
REPORT_STORES = 10


@dataclass
class SalesEvidence:
    """Events by age in whole days before the data's end.

    ``per_store_item``: store_id (str), item (int, group-order index), last_age (the latest event there),
    before_age (the latest event at least ``holdout_days`` old; NaN: none), holdout_lines (purchase lines in the
    holdout). ``per_item``: item, last_age, before_age over every event, with or without a store."""

    per_store_item: pd.DataFrame
    per_item: pd.DataFrame


def sales_evidence(events: pd.DataFrame, item_idx: np.ndarray, data_end: pd.Timestamp, holdout_days: float
                   ) -> SalesEvidence:
    """The pandas backend: :class:`SalesEvidence` of the prepared ``events`` (``item_idx``: each event's item).
    Every event counts as evidence that the item is on sale (a shop shows what it sells); the coverage is
    measured on purchases."""
    age = np.floor((data_end - events["timestamp"]).dt.total_seconds().to_numpy() / 86_400.0)
    purchase = events["event_type"].isin(list(PURCHASE_TYPES)).to_numpy()
    frame = pd.DataFrame({"store_id": events["store_id"].to_numpy(), "item": item_idx, "age": age})
    frame["before"] = frame["age"].where(frame["age"] >= holdout_days)
    frame["holdout"] = (purchase & (age < holdout_days)).astype(np.int64)
    per_item = frame.groupby("item").agg(last_age=("age", "min"), before_age=("before", "min")).reset_index()
    stored = frame[frame["store_id"].notna()].astype({"store_id": str})
    per_store_item = stored.groupby(["store_id", "item"]).agg(
        last_age=("age", "min"), before_age=("before", "min"), holdout_lines=("holdout", "sum")).reset_index()
    return SalesEvidence(per_store_item, per_item)


def read_assortment(path: str | Path, mapping: AssortmentColumns | DataMapping | None = None) -> pd.DataFrame:
    """The ``--assortment`` file (parquet or CSV) as store_id, item_id text; a missing column, an empty id or an
    empty file is a :class:`DataValidationError` naming the file and the column."""
    from training.loaders.files import read_columns  # the loaders import the mapping; keep this module light

    columns = mapping.assortment if isinstance(mapping, DataMapping) else mapping or AssortmentColumns()
    raw = read_columns(path, columns, "assortment")
    frame = pd.DataFrame({"store_id": raw[columns.store_id], "item_id": raw[columns.item_id]})
    for key, column in (("store_id", columns.store_id), ("item_id", columns.item_id)):
        values = frame[key]
        empty = values.isna() | values.astype(str).str.strip().eq("")
        if empty.any():
            first = int(np.flatnonzero(empty.to_numpy())[0]) + 1
            raise DataValidationError(f"{path}: column '{column}' (mapping key assortment.{key}) has "
                                      f"{int(empty.sum())} empty value(s), first in row {first}")
        frame[key] = values.astype(str).str.strip()
    if frame.empty:
        raise DataValidationError(f"{path}: the assortment file has no rows")
    return frame.drop_duplicates(ignore_index=True)


def build_assortment(evidence: SalesEvidence, item_ids: pd.Series, config: AssortmentConfig,
                     listed: pd.DataFrame | None = None) -> tuple[Assortment, dict[str, Any]]:
    """The model's :class:`Assortment` and the report of how it was decided (the manifest's ``assortment``)."""
    n_items = len(item_ids)
    window, holdout = config.window_days, config.holdout_days
    per_item = evidence.per_item
    chain = np.zeros(n_items, dtype=bool)
    chain[per_item["item"].to_numpy()[per_item["last_age"].to_numpy() < window]] = True
    chain_before = np.zeros(n_items, dtype=bool)  # what the chain-level inference said at the holdout's start
    chain_before[per_item["item"].to_numpy()[per_item["before_age"].to_numpy() < holdout + window]] = True

    sales = evidence.per_store_item
    sales = sales.assign(store_hit=(sales["before_age"] < holdout + window).to_numpy(),
                         chain_hit=chain_before[sales["item"].to_numpy()])
    lines = sales["holdout_lines"].to_numpy(np.float64)
    per_store = pd.DataFrame({"store_id": sales["store_id"], "lines": lines,
                              "store": lines * sales["store_hit"], "chain": lines * sales["chain_hit"]}) \
        .groupby("store_id").sum()
    measured = per_store[per_store["lines"] >= config.min_holdout_lines]
    store_coverage = measured["store"] / measured["lines"]
    chain_coverage = measured["chain"] / measured["lines"]
    trusted = store_coverage.index[store_coverage >= config.store_level_coverage]
    inferred_stores = np.asarray(sorted(trusted), dtype=str)
    recent = sales[sales["store_id"].isin(set(trusted)) & (sales["last_age"] < window)]
    inferred = _rows_of(recent["store_id"], recent["item"].to_numpy(), inferred_stores, n_items)

    listed_stores, listed_report = np.empty(0, dtype=str), None
    listed_matrix = sp.csr_matrix((0, n_items), dtype=np.int8)
    if listed is not None:
        positions = pd.Index(item_ids.astype(str)).get_indexer(listed["item_id"])
        known = positions >= 0
        listed_stores = np.asarray(sorted(listed["store_id"].unique()), dtype=str)
        listed_matrix = _rows_of(listed["store_id"][known], positions[known], listed_stores, n_items)
        listed_report = {"stores": len(listed_stores), "rows": len(listed),
                         "unknown_items": int((~known).sum()), "items": int(np.unique(positions[known]).size)}

    busiest = measured.sort_values("lines", ascending=False).head(REPORT_STORES)
    report: dict[str, Any] = {
        "source": "file" if listed is not None else "inferred",
        "window_days": window, "holdout_days": holdout, "store_level_coverage": config.store_level_coverage,
        "chain_items": int(chain.sum()),
        "stores": {"with_sales": len(per_store), "measured": len(measured), "store_level": len(inferred_stores),
                   "chain_level": len(per_store) - len(inferred_stores)},
        # over every measured store's holdout lines: how much each level would have covered
        "coverage": {"store_level": _share(measured["store"].sum(), measured["lines"].sum()),
                     "chain_level": _share(measured["chain"].sum(), measured["lines"].sum()),
                     "store_level_median": _median(store_coverage), "chain_level_median": _median(chain_coverage)},
        "busiest_stores": [{"store_id": str(store), "holdout_lines": int(row["lines"]),
                            "store_level": round(float(row["store"] / row["lines"]), 4),
                            "chain_level": round(float(row["chain"] / row["lines"]), 4),
                            "level": "store" if store in set(trusted) else "chain"}
                           for store, row in busiest.iterrows()],
        "listed": listed_report,
    }
    return Assortment(chain, inferred_stores, inferred, listed_stores, listed_matrix), report


def _rows_of(stores: pd.Series, items: np.ndarray, row_stores: np.ndarray, n_items: int) -> sp.csr_matrix:
    rows = pd.Index(row_stores).get_indexer(stores.astype(str))
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, items)), shape=(len(row_stores), n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1
    matrix.sort_indices()
    return matrix


def _share(part: float, whole: float) -> float | None:
    return round(float(part / whole), 4) if whole else None


def _median(values: pd.Series) -> float | None:
    return round(float(values.median()), 4) if len(values) else None
