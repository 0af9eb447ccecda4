"""What a model is built from that is computed from the events: the typed :class:`Aggregates` (the per-item frame,
customer x item, store x item, customer stats and the pair signals), and the pandas backend that computes them
(:func:`aggregate`). The Spark backend (:mod:`training.spark.aggregates`) computes the same in the same layout;
:func:`training.assembly.assemble` turns either into a model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.domain.config import TrainConfig
from recsys.domain.schema import LIST_PRICE, PURCHASE_TYPES, Dataset, ValidationReport
from recsys.domain.sizes import parse_package_sizes
from recsys.model.data import GROUP_KEYS, contiguous_ranges
from training.assortment import SalesEvidence, sales_evidence
from training.catalog import sort_items
from training.events import event_weights, prepare_events
from training.neighbours import cooccurrence, switching
from training.progress import StageTimer
from training.queries import positions_in


@dataclass
class Aggregates:
    """Everything the driver builds a model from that comes from the events, in one layout for every engine: items
    in group order, customers sorted by id (the row order of the customer matrices), stores sorted by id."""

    report: ValidationReport  # the trainer's own row counts ("trainer" source)
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    event_count: int
    event_types: dict[str, int]  # kept events per type, most frequent first
    items: pd.DataFrame  # the catalog with PER_ITEM_COLUMNS and the parsed sizes, in group order
    size_parse_rate: float | None
    customers: pd.Index  # customer ids (str), sorted
    customer_weight: sp.csr_matrix  # customer x item: recency-weighted interactions
    customer_count: sp.csr_matrix  # the same structure: purchase counts
    customer_recent: sp.csr_matrix  # the same structure: weights with the trend half-life
    stores: np.ndarray  # store ids (str), sorted
    store_items: sp.csr_matrix  # store x item: recency-weighted purchases
    home_store: np.ndarray  # per customer: row in ``stores`` of the store they visit most, -1 if none
    customer_stats: pd.DataFrame  # per customer: recency_days, baskets, spend, segment
    # the pair signals, item x item within a group (recsys.model.data.PAIR_SIGNALS but the feedback's)
    bought_instead: sp.csr_matrix  # bought by the same customers
    switched_to: sp.csr_matrix  # switch baskets holding the candidate
    tried: sp.csr_matrix  # customers loyal to X who tried the candidate
    viewed_together: sp.csr_matrix  # viewed or carted in one session
    sales: SalesEvidence  # purchases by store, item and age: what the assortment inference reads


def aggregate(dataset: Dataset, config: TrainConfig, train_until: datetime | None = None, *,
              timer: StageTimer | None = None) -> tuple[Aggregates, pd.DataFrame]:
    """The pandas backend: the aggregates of ``dataset``'s usable events, and those events (the compact frame of
    :func:`training.events.prepare_events`, for the ranker stage), in the stages validate, catalog,
    interactions and neighbours of ``timer``."""
    timer = timer or StageTimer(False)
    report = ValidationReport(source="trainer")
    with timer.stage("validate"):
        events = prepare_events(dataset, config, train_until, report)
        data_end, weights, trend_weights = event_weights(events, config)

    with timer.stage("catalog"):
        items = _build_items(dataset.catalog, events, weights, trend_weights, config.trend_half_life_days, data_end)
        # int32 codes per event: the trainer's memory grows with the events
        item_idx = positions_in(pd.Index(items["item_id"]), events["item_id"]).astype(np.int32)
        cust_codes, customer_index = pd.factorize(events["customer_id"], sort=True)
        cust_codes = cust_codes.astype(np.int32)
        customers = pd.Index(customer_index.astype(str))
        session_codes = pd.factorize(events["session_id"])[0].astype(np.int32)
        parse_rate = size_parse_rate(items)

    with timer.stage("interactions"):
        is_purchase = events["event_type"].isin(list(PURCHASE_TYPES)).to_numpy()
        weight, count, recent = _profiles(cust_codes, item_idx, weights, trend_weights, is_purchase,
                                          n_customers=len(customers), n_items=len(items))
        stores, store_items, home_store = _stores(events, cust_codes, session_codes, item_idx, weights,
                                                  n_customers=len(customers), n_items=len(items))
        customer_stats = _customer_stats(events.loc[is_purchase, ["timestamp", "price", "quantity"]],
                                         *_rows(is_purchase, cust_codes, session_codes), len(customers), data_end)
        sales = sales_evidence(events, item_idx, data_end, config.assortment.holdout_days)
        del weights, trend_weights

    with timer.stage("neighbours"):
        group_of, _ = contiguous_ranges(items[list(GROUP_KEYS)])
        bought_instead = cooccurrence(*_rows(is_purchase, cust_codes, item_idx), group_of, len(items),
                                      config.max_neighbours, conditional=True)
        switched_to, tried = switching(*_rows(is_purchase, cust_codes, session_codes, item_idx), group_of,
                                       len(items), config.max_neighbours)
        viewed_together = cooccurrence(*_rows(~is_purchase, session_codes, item_idx), group_of, len(items),
                                       config.max_neighbours)

    event_types = {str(name): int(n) for name, n in events["event_type"].value_counts().items() if n > 0}
    return Aggregates(
        report=report, data_start=events["timestamp"].min(), data_end=data_end, event_count=len(events),
        event_types=event_types, items=items, size_parse_rate=parse_rate, customers=customers,
        customer_weight=weight, customer_count=count, customer_recent=recent, stores=stores, store_items=store_items,
        home_store=home_store, customer_stats=customer_stats, bought_instead=bought_instead, switched_to=switched_to,
        tried=tried, viewed_together=viewed_together, sales=sales), events


def _build_items(catalog: pd.DataFrame, events: pd.DataFrame, weights: np.ndarray, trend_weights: np.ndarray,
                 trend_half_life_days: float, data_end: pd.Timestamp) -> pd.DataFrame:
    """Catalog features in group order (department, category, product_type, most popular first).

    ``trial_trend`` counts customers buying the item for the first time, each weighted by the recency of that
    first purchase (trend half-life): the items shoppers are trying now. ``days_on_sale``: days from the
    item's first event to the data's end (NaN without events); a recent launch is tried by many.
    """
    purchases = events.loc[events["event_type"].isin(list(PURCHASE_TYPES)), ["customer_id", "item_id", "timestamp"]]
    first_buy = purchases.groupby(["customer_id", "item_id"])["timestamp"].min()
    first_age = (data_end - first_buy).dt.total_seconds().to_numpy() / 86400.0
    first_seen = events.groupby("item_id")["timestamp"].min()
    per_item = {
        "price": events.groupby("item_id")["price"].median(),
        "popularity": pd.Series(weights, index=events.index).groupby(events["item_id"]).sum(),
        "trend": pd.Series(trend_weights, index=events.index).groupby(events["item_id"]).sum(),
        "n_customers": events.groupby("item_id")["customer_id"].nunique(),
        "trial_trend": pd.Series(np.power(0.5, first_age / trend_half_life_days), index=first_buy.index
                                 ).groupby(level=1).sum(),
        "days_on_sale": (data_end - first_seen).dt.total_seconds() / 86400.0,
    }
    return items_from_aggregates(catalog, per_item)


#: what every engine computes per item from the events for :func:`items_from_aggregates`
PER_ITEM_COLUMNS = ("price", "popularity", "trend", "n_customers", "trial_trend", "days_on_sale")


def items_from_aggregates(catalog: pd.DataFrame, per_item: Mapping[str, pd.Series]) -> pd.DataFrame:
    """The item frame in group order: the catalog (one row per item, package sizes parsed) with each engine's
    per-item aggregates (``PER_ITEM_COLUMNS``, each a Series indexed by item id) looked up by item id. An item
    without events gets 0 (its price: the catalog's list price where there is one; days on sale: NaN)."""
    items = catalog.drop_duplicates("item_id").reset_index(drop=True).copy()
    items = pd.concat([items, parse_package_sizes(items["package_size"])], axis=1)
    ids = items["item_id"]
    items["price"] = ids.map(per_item["price"]).astype("float64")
    if LIST_PRICE in items.columns:  # the catalog's price where no event carries one (catalog-only items)
        items["price"] = items["price"].fillna(pd.to_numeric(items[LIST_PRICE], errors="coerce"))
    items["popularity"] = ids.map(per_item["popularity"]).fillna(0.0).astype("float64")
    items["trend"] = ids.map(per_item["trend"]).fillna(0.0).astype("float64")
    items["n_customers"] = ids.map(per_item["n_customers"]).fillna(0).astype("int64")
    items["trial_trend"] = ids.map(per_item["trial_trend"]).fillna(0.0).astype("float64")
    items["days_on_sale"] = ids.map(per_item["days_on_sale"]).astype("float64")
    items["package_size"] = items["package_size"].astype("string")
    return sort_items(items)


def size_parse_rate(items: pd.DataFrame) -> float | None:
    """The share of items with a package size whose size parses (``items``: one row per item, with the
    ``size_family`` of :func:`recsys.domain.sizes.parse_package_sizes`); None when no item has a size."""
    given = items["package_size"].notna() & items["package_size"].astype("string").str.strip().ne("")
    return float(items.loc[given, "size_family"].notna().mean()) if given.any() else None


def _rows(mask: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The ``mask`` rows of each array; the arrays themselves, not copies, when every row is selected (a
    purchase-only log)."""
    return arrays if mask.all() else tuple(array[mask] for array in arrays)


def _profiles(cust: np.ndarray, item_idx: np.ndarray, weights: np.ndarray, recent_weights: np.ndarray,
              is_purchase: np.ndarray, *, n_customers: int, n_items: int
              ) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
    """Customer x item weight (long half-life), purchase count and recent weight (trend half-life), all with
    the identical sparsity structure, so the engine reads them with one index lookup."""
    # one int64 key per event, not a (customer, item) frame: this is the largest per-event step of the trainer
    key = np.asarray(cust, dtype=np.int64) * n_items + np.asarray(item_idx, dtype=np.int64)
    agg = pd.DataFrame({"w": weights, "p": is_purchase.astype(np.float32), "r": recent_weights}).groupby(
        key, sort=True).sum()
    customer, item = np.divmod(agg.index.to_numpy(np.int64), n_items)
    indptr = np.zeros(n_customers + 1, dtype=np.int64)
    np.cumsum(np.bincount(customer, minlength=n_customers), out=indptr[1:])
    indices = item.astype(np.int32)
    return tuple(  # type: ignore[return-value]
        sp.csr_matrix((agg[column].to_numpy(np.float32), indices, indptr), shape=(n_customers, n_items))
        for column in ("w", "p", "r")
    )


def _stores(events: pd.DataFrame, cust_codes: np.ndarray, session_codes: np.ndarray, item_idx: np.ndarray,
            weights: np.ndarray, *, n_customers: int, n_items: int) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    """Store ids, store x item recency-weighted purchases, and each customer's most-visited store."""
    has_store = events["store_id"].notna().to_numpy()
    store_codes, stores = pd.factorize(events["store_id"][has_store], sort=True)
    store_items = sp.csr_matrix((weights[has_store].astype(np.float32), (store_codes, item_idx[has_store])),
                                shape=(len(stores), n_items))
    store_items.sum_duplicates()
    store_items.sort_indices()
    home = np.full(n_customers, -1, dtype=np.int64)
    if len(stores):
        visits = pd.DataFrame({"c": cust_codes[has_store], "s": store_codes,
                               "b": session_codes[has_store]}).drop_duplicates()
        per_store = visits.groupby(["c", "s"]).size().rename("n").reset_index()
        per_store = per_store.sort_values(["c", "n", "s"], ascending=[True, False, True]).drop_duplicates("c")
        home[per_store["c"].to_numpy()] = per_store["s"].to_numpy()
    return np.asarray(stores.astype(str), dtype=object), store_items, home


def _customer_stats(purchases: pd.DataFrame, cust_codes: np.ndarray, baskets: np.ndarray, n_customers: int,
                    data_end: pd.Timestamp) -> pd.DataFrame:
    """Recency (days from the last purchase to the data's end), frequency (baskets), monetary (spend), and an
    RFM segment from their quintiles among customers: champion, loyal, at risk, new, occasional, or
    browser (no purchase)."""
    frame = pd.DataFrame({"c": cust_codes, "t": purchases["timestamp"].to_numpy(),
                          "b": baskets,
                          "spend": (purchases["price"].fillna(0.0) * purchases["quantity"].fillna(1.0)).to_numpy()})
    per = frame.groupby("c").agg(last=("t", "max"), baskets=("b", "nunique"), spend=("spend", "sum"))
    per = per.reindex(range(n_customers))
    recency = ((data_end - per["last"]).dt.total_seconds() / 86400.0).round(1)
    return with_segments(pd.DataFrame({"recency_days": recency.astype("float64"),
                                       "baskets": per["baskets"].fillna(0).astype("int64"),
                                       "spend": per["spend"].fillna(0.0).round(2).astype("float64")}))


def with_segments(stats: pd.DataFrame) -> pd.DataFrame:
    """``stats`` (recency_days, baskets, spend per customer) with each customer's RFM ``segment``."""

    def quintile(values: pd.Series) -> pd.Series:  # 1 (lowest) .. 5 (highest)
        return np.ceil(values.rank(pct=True) * 5).clip(1, 5)

    r, f = quintile(-stats["recency_days"]), quintile(stats["baskets"].astype(float))
    segment = np.select([(r >= 4) & (f >= 4), f >= 4, (r <= 2) & (f >= 3), (f <= 1) & (r >= 4)],
                        ["champion", "loyal", "at risk", "new"], default="occasional")
    stats["segment"] = np.where(stats["baskets"] > 0, segment, "browser")
    stats["segment"] = stats["segment"].astype(str)
    return stats
