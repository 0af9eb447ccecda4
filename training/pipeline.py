"""The offline trainer: events + catalog -> versioned model directory (see ``recsys.artifact``)."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from recsys import artifact
from recsys.config import RankerConfig, TrainConfig
from recsys.engine import SubstituteEngine
from recsys.manifest import DataSpan, Manifest, RankerSection, RerankerSection, SourceReport
from recsys.model import GROUP_KEYS, RERANKER_FILE, ModelData, contiguous_ranges
from recsys.ranking import DEFAULT_WEIGHTS
from recsys.schema import LIST_PRICE, PURCHASE_TYPES, Dataset, DataValidationError, ValidationReport
from recsys.sizes import parse_package_sizes
from recsys.types import Intent
from training import evaluation, report
from training.catalog import impute_cold_factors, sort_items
from training.neighbours import cooccurrence, switching
from training.queries import Queries, build_queries, positions_in
from training.ranker import FAMILIAR_SHIFTS, NEW_ITEM_BIASES, collect, fit, fit_reranker

STAGES = ("validate", "catalog", "interactions", "embeddings", "neighbours", "feedback", "index", "ranker", "report",
          "write")


@dataclass
class FittedModel:
    """A model trained in memory and not written yet (:func:`save_model` writes it): the model, its manifest,
    and the stages timed so far."""

    model: ModelData
    manifest: Manifest
    timer: StageTimer
    started: float  # time.perf_counter() when training started

    def engine(self) -> SubstituteEngine:
        """An engine on the model as it is, in memory (what the trainer's own evaluations query)."""
        return SubstituteEngine(self.model, self.manifest)


@dataclass
class TrainResult:
    model_dir: Path
    manifest: Manifest
    stage_seconds: dict[str, float] = field(default_factory=dict)


class StageTimer:
    """Times named stages and advances one progress bar per stage."""

    def __init__(self, show: bool) -> None:
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}
        self.bar = tqdm(total=len(STAGES), desc="train", unit="stage", disable=not show, leave=True)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.bar.set_description(f"train: {name}")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        self.peak_rss_mb[name] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        self.bar.update(1)


#: id columns the trainer holds as categoricals: an integer code per event instead of a string (about a third of
#: the memory of the string frame; the trainer's peak memory grows with the events, so this sets how far it goes)
ID_COLUMNS = ("customer_id", "item_id", "session_id", "event_type", "store_id")


def _prepare_events(dataset: Dataset, config: TrainConfig, train_until: datetime | None,
                    report: ValidationReport) -> pd.DataFrame:
    """The usable events, as a compact frame: id columns categorical, rows in their original order."""
    events = dataset.events.assign(**{column: _categorical(dataset.events[column]) for column in ID_COLUMNS})
    report.rows_read = len(events)
    unknown_type = ~events["event_type"].isin(list(config.event_weights))
    report.skip("unknown event type", int(unknown_type.sum()))
    unknown_item = ~events["item_id"].isin(dataset.catalog["item_id"])
    report.skip("item not in catalog", int((unknown_item & ~unknown_type).sum()))
    keep = ~unknown_type & ~unknown_item
    # a clock error at the source, not an event: it would also make every real event look old
    future = events["timestamp"] > pd.Timestamp.now() + pd.Timedelta(days=1)
    report.skip("timestamp in the future", int((future & keep).sum()))
    keep &= ~future
    if train_until is not None:
        later = events["timestamp"] > pd.Timestamp(train_until)
        report.skip("after --train-until", int((later & keep).sum()))
        keep &= ~later
    duplicated = _duplicated(events)
    report.skip("duplicate row", int((duplicated & keep).sum()))
    keep &= ~duplicated
    if not keep.all():
        events = events[keep]
    if events.empty:
        raise no_usable_events(report)
    return events


def _weights(events: pd.DataFrame, config: TrainConfig) -> tuple[pd.Timestamp, np.ndarray, np.ndarray]:
    """The data's end and each event's weight: its type's weight, halved every ``recency_half_life_days`` before
    the end; and the same with the short (trend) half-life."""
    data_end = events["timestamp"].max()
    age_days = (data_end - events["timestamp"]).dt.total_seconds().to_numpy() / 86400.0
    event_weight = events["event_type"].map(config.event_weights).to_numpy(np.float64)
    return (data_end, event_weight * np.power(0.5, age_days / config.recency_half_life_days),
            event_weight * np.power(0.5, age_days / config.trend_half_life_days))


def no_usable_events(report: ValidationReport) -> DataValidationError:
    """The error of data whose every row was skipped, with the skip counts (every engine raises this one)."""
    return DataValidationError(
        "no usable events: every row was skipped (" + ", ".join(f"{k}: {v}" for k, v in report.skipped.items())
        + "); check the data, the column mapping and --train-until")


def _categorical(ids: pd.Series) -> pd.Series:
    """``ids`` as a categorical with sorted categories, so that its codes sort like the ids themselves."""
    ids = ids.astype("category")
    categories = ids.cat.categories
    return ids if categories.is_monotonic_increasing else ids.cat.reorder_categories(categories.sort_values())


def _duplicated(events: pd.DataFrame) -> np.ndarray:
    """``events.duplicated()`` without its per-column codes for every row: rows are hashed (8 bytes each) and
    compared column by column only where a hash repeats, so the answer is exact."""
    hashes = pd.util.hash_pandas_object(events, index=False)
    suspects = hashes.duplicated(keep=False).to_numpy()
    duplicated = np.zeros(len(events), dtype=bool)
    if suspects.any():
        duplicated[suspects] = events[suspects].duplicated().to_numpy()
    return duplicated


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


def _rows(mask: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The ``mask`` rows of each array; the arrays themselves, not copies, when every row is selected (a
    purchase-only log)."""
    return arrays if mask.all() else tuple(array[mask] for array in arrays)


def _profiles(cust: np.ndarray, item_idx: np.ndarray, weights: np.ndarray, recent_weights: np.ndarray,
              is_purchase: np.ndarray, n_customers: int, n_items: int
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
            weights: np.ndarray, n_customers: int, n_items: int) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
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


def _embeddings(weight: sp.csr_matrix, config: TrainConfig, show_progress: bool
                ) -> tuple[np.ndarray, list[float]]:
    """Normalised ALS item factors (zero for items without events) and the training loss per iteration."""
    als_config = config.als
    confidence = weight.copy()
    confidence.data = np.log1p(confidence.data * 4.0).astype(np.float32)
    with threadpool_limits(1, "blas"):  # implicit asks for single-threaded BLAS (it checks in __init__)
        model = AlternatingLeastSquares(
            factors=als_config.factors, regularization=als_config.regularization, alpha=als_config.alpha,
            iterations=als_config.iterations, random_state=als_config.random_state,
            num_threads=os.cpu_count() or 1, calculate_training_loss=True,
        )
        losses: list[float] = []
        model.fit(confidence, show_progress=show_progress,
                  callback=lambda iteration, seconds, loss: losses.append(round(float(loss), 6)))
    factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    has_events = np.asarray(weight.getnnz(axis=0)) > 0
    factors[~has_events] = 0.0
    return unit_rows(factors), losses


def unit_rows(factors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (cosine by inner product); an all-zero row (an item without events) stays 0."""
    norms = np.linalg.norm(factors, axis=1, keepdims=True)
    return np.divide(factors, norms, out=np.zeros_like(factors), where=norms > 0)


#: fits the ranker's inner model in memory: (config with the ranker off, train_until) -> the fitted model
InnerFit = Callable[[TrainConfig, datetime], "FittedModel"]


def _learn_ranker(catalog: pd.DataFrame, events: pd.DataFrame, config: TrainConfig,
                  data_end: pd.Timestamp | None = None, fit_inner: InnerFit | None = None
                  ) -> tuple[RankerSection, str, dict[str, Any] | None]:
    """Fit the ranker on the last ``validation_weeks`` of the data (an inner model trained before them).

    ``events``: the events the validation queries and the baselines are built from. By default they are all the
    events, and the inner model is fitted from them with :func:`fit_model`. Another engine passes a sample of the
    customers' events, the end of its full data as ``data_end`` and its own ``fit_inner``, which fits the inner
    model on all its events before the validation start. The inner model stays in memory: it is never written.

    Returns the manifest's ``ranker`` section, the re-ranker's model text ("" when none) and the held-out
    metrics: a seeded share of the sampled validation queries is kept out of the fit, topped up with unsampled
    ones to ``selection_queries``, and answered by the fitted ranker, the default weights and the baselines.
    The new-item bias is chosen on those same queries, so their metrics are a little optimistic for that one
    number; ``recsys evaluate`` is the unbiased measure.
    """
    ranker = config.ranker
    default = RankerSection(weights=dict(DEFAULT_WEIGHTS), source="default", min_score=config.min_score)
    if not ranker.enabled:
        return default, "", None
    data_end = pd.Timestamp(events["timestamp"].max()) if data_end is None else pd.Timestamp(data_end)
    validation_start = data_end - pd.Timedelta(weeks=ranker.validation_weeks)
    inner_config = config.model_copy(update={"ranker": ranker.model_copy(update={"enabled": False})})

    def fit_here(inner_config: TrainConfig, train_until: datetime) -> FittedModel:
        return fit_model(Dataset(events=events, catalog=catalog, reports=[]), inner_config, train_until=train_until,
                         show_progress=False)

    try:
        inner = (fit_inner or fit_here)(inner_config, validation_start.to_pydatetime())
    except DataValidationError:
        return default.model_copy(update={"note": "no events before the validation period"}), "", None
    engine = inner.engine()
    queries, unsampled = build_queries(_customer_sample(events, ranker.max_customers, ranker.seed), engine,
                                       validation_start, per_basket=True).partition(ranker.max_queries, ranker.seed)
    if len(queries) < ranker.min_queries:
        return default.model_copy(update={"note": f"only {len(queries)} validation queries"}), "", None
    fit_queries, held_out = queries.split(ranker.holdout_share, ranker.seed)
    # the bias choice compares margins of a few tenths of a point: it needs more queries than the held-out
    # share, and the validation queries the fit did not sample cost nothing to add
    held_out = held_out + unsampled.sample(max(ranker.selection_queries - len(held_out), 0), ranker.seed)
    xs, customers, relevant = fit_queries.x, fit_queries.customer, list(fit_queries.relevant)
    if ranker.new_item_emphasis:
        has_new = fit_queries.new_mask
        xs = np.concatenate([xs, xs[has_new]])
        customers = np.concatenate([customers, customers[has_new]])
        relevant += [n for n, keep in zip(fit_queries.new, has_new, strict=True) if keep]
    features, labels, starts = collect(engine, xs, customers, relevant)
    fitted = fit(features, labels, starts, l2=ranker.l2)
    section = fitted.ranker.model_copy(update={"source": "learned", "min_score": fitted.min_score})
    methods = evaluation.make_methods(engine, events, validation_start, ranker.seed) if len(held_out) else {}
    ours_names = set(evaluation.INTENT_METHODS.values())
    baselines = evaluation.score(engine, {name: rank for name, rank in methods.items() if name not in ours_names},
                                 held_out)[0] if methods else {}
    default_metrics = (evaluation.score(engine, {"default-weights": methods["ours"]}, held_out)[0]
                       if methods else {})  # the inner engine ranks with the default weights
    reranker_text = ""
    if ranker.gbdt_trees > 0:
        reranker_text, fixed = fit_reranker(features, labels, starts, ranker)
        bias, tried = _choose_new_item_bias(engine, section, reranker_text, fixed, held_out, baselines, ranker)
        section.reranker = RerankerSection(file=RERANKER_FILE, trees=ranker.gbdt_trees, leaves=ranker.gbdt_leaves,
                                           new_item_bias=bias, fixed_weights=fixed, bias_search=tried)
    metrics = None
    if methods:
        engine.set_ranker(section, reranker_text)  # "ours" = the fitted ranker
        section.familiar_shift, section.familiar_search = _choose_familiar_shift(engine, held_out, baselines)
        engine.set_ranker(section, reranker_text)
        ours, _ = evaluation.score(engine, evaluation.intent_rankers(engine), held_out)
        metrics = {"split": validation_start.isoformat(),
                   "queries": {"all": len(held_out), "new_to_customer": held_out.n_new},
                   "methods": {**ours, **baselines, **default_metrics}}
    section.validation = {"start": validation_start.isoformat(), "queries": len(fit_queries),
                          "fitted_lists": fitted.queries, "candidates": fitted.candidates,
                          "loss": round(fitted.loss, 5)}
    return section, reranker_text, metrics


def sampled_customers(n_customers: int, n: int, seed: int) -> np.ndarray | None:
    """Positions of a seeded sample of ``n`` among ``n_customers`` customers in id order (None: no more than ``n``,
    take them all). Every engine draws the ranker's validation customers here, so they draw the same ones."""
    if n_customers <= n:
        return None
    return np.random.default_rng(seed).choice(n_customers, size=n, replace=False)


def _customer_sample(events: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """The events of a seeded sample of ``n`` customers (all of them when there are no more than ``n``): the
    ranker needs a fixed number of validation queries, and building them costs time and memory in proportion to
    the events they are built from."""
    codes = events["customer_id"].cat.codes.to_numpy()
    present = np.unique(codes)  # the customers with events, in id order (the categories are sorted)
    positions = sampled_customers(len(present), n, seed)
    if positions is None:
        return events
    return events[np.isin(codes, present[positions])]


def _choose_new_item_bias(engine: SubstituteEngine, section: RankerSection, reranker_text: str,
                          fixed: dict[str, float], held_out: Queries, baselines: dict[str, Any],
                          config: RankerConfig) -> tuple[float, dict[str, float]]:
    """The configured new-item bias, else the one of NEW_ITEM_BIASES whose smaller HR@3 margin over the best
    baseline, on all and on new-to-customer held-out validation queries, is largest (0 without held-out
    queries); and the margin of each bias tried. The bias trades "what they buy" against "something new"."""
    if config.new_item_bias is not None or not baselines or not held_out.n_new:
        return (config.new_item_bias or 0.0), {}
    best_baseline = {subset: max(m[subset]["HR@3"] for m in baselines.values()) for subset in evaluation.SUBSETS}
    tried = {}
    for bias in NEW_ITEM_BIASES:
        engine.set_ranker(section.model_copy(update={"reranker": RerankerSection(new_item_bias=bias,
                                                                                 fixed_weights=fixed)}),
                          reranker_text)
        ours = evaluation.score(engine, {"ours": evaluation.engine_ranker(engine)}, held_out)[0]["ours"]
        tried[str(bias)] = round(min(ours[s]["HR@3"] - best_baseline[s] for s in evaluation.SUBSETS), 5)
    return float(max(tried, key=lambda b: tried[b])), tried


def _choose_familiar_shift(engine: SubstituteEngine, held_out: Queries, baselines: dict[str, Any]
                           ) -> tuple[float | None, dict[str, float]]:
    """The familiar intent's shift of FAMILIAR_SHIFTS with the largest all-queries HR@3 margin over
    history-then-popular on the held-out validation queries (None, the build's default, without them); and
    the margin of each shift tried. The ranker is fitted and its new-item bias chosen already."""
    specialist = evaluation.INTENT_SPECIALISTS[Intent.familiar]
    if not len(held_out) or specialist.baseline not in baselines:
        return None, {}
    best_baseline = baselines[specialist.baseline][specialist.subset]["HR@3"]
    scorer, tried = engine.scorer, {}
    for shift in FAMILIAR_SHIFTS:
        engine.scorers[Intent.familiar] = scorer.shifted(shift)
        familiar = evaluation.engine_ranker(engine, Intent.familiar)
        ours = evaluation.score(engine, {"familiar": familiar}, held_out)[0]["familiar"]
        tried[str(shift)] = round(ours[specialist.subset]["HR@3"] - best_baseline, 5)
    return float(max(tried, key=lambda shift: tried[shift])), tried


def _feedback(decisions: pd.DataFrame | None, item_ids: pd.Series, customers: pd.Index
              ) -> tuple[sp.csr_matrix, sp.csr_matrix, dict[str, int]]:
    """Substitution feedback as an item x item score, (accepted - rejected) / (all + 1) per pair (one
    rejection -0.5, three -0.75, one acceptance +0.5), and customer x item counts of accepted substitutes.
    No time decay: feedback is rare and recent by nature."""
    n_items, n_customers = len(item_ids), len(customers)
    empty = sp.csr_matrix((n_items, n_items), dtype=np.float32), sp.csr_matrix((n_customers, n_items),
                                                                               dtype=np.float32)
    if decisions is None or decisions.empty:
        return *empty, {"feedback_decisions": 0}
    index = pd.Index(item_ids)
    x, y = index.get_indexer(decisions["item_id"]), index.get_indexer(decisions["substitute_id"])
    known = (x >= 0) & (y >= 0)
    frame = pd.DataFrame({"x": x[known], "y": y[known], "accepted": decisions["accepted"].to_numpy(bool)[known],
                          "customer": customers.get_indexer(decisions["customer_id"].astype(object))[known]})
    pairs = frame.groupby(["x", "y"])["accepted"].agg(["sum", "count"]).reset_index()
    score = (2 * pairs["sum"] - pairs["count"]) / (pairs["count"] + 1)
    pair_matrix = sp.csr_matrix((score.to_numpy(np.float32), (pairs["x"], pairs["y"])), shape=(n_items, n_items))
    mine = frame[frame["accepted"] & (frame["customer"] >= 0)]
    accepted = sp.csr_matrix((np.ones(len(mine), np.float32), (mine["customer"], mine["y"])),
                             shape=(n_customers, n_items))
    accepted.sum_duplicates()
    for matrix in (pair_matrix, accepted):
        matrix.sort_indices()
    return pair_matrix, accepted, {"feedback_decisions": int(known.sum()),
                                   "feedback_unknown_items": int((~known).sum()), "feedback_pairs": len(pairs)}


def _current_manifest(out_dir: Path) -> Manifest | None:
    """The manifest of the model that is current before this one (for the report's comparison)."""
    try:
        return artifact.read_manifest(out_dir / artifact.CURRENT, verify=False)
    except artifact.ArtifactError:
        return None


def train(dataset: Dataset, config: TrainConfig | None = None, *, out_dir: Path = Path("models"),
          train_until: datetime | None = None, show_progress: bool = True, make_current: bool = True,
          with_report: bool = True, feedback: pd.DataFrame | None = None) -> TrainResult:
    """Train a model from ``dataset`` and write it to ``out_dir/<version>`` (repointing ``current`` unless
    ``make_current`` is false), with its report (see :mod:`training.report`) unless ``with_report`` is false:
    :func:`fit_model`, then :func:`save_model`."""
    fitted = fit_model(dataset, config, train_until=train_until, feedback=feedback, show_progress=show_progress)
    return save_model(fitted, out_dir, make_current=make_current, with_report=with_report)


def fit_model(dataset: Dataset, config: TrainConfig | None = None, *, train_until: datetime | None = None,
              feedback: pd.DataFrame | None = None, show_progress: bool = True) -> FittedModel:
    """Train a model from ``dataset``, in memory. ``train_until``: events after it are left out (counted);
    ``feedback``: substitution decisions (:func:`recsys.state.read_decisions`), the strongest signal."""
    config = config or TrainConfig()
    timer = StageTimer(show_progress)
    started = time.perf_counter()
    prep = ValidationReport(source="trainer")

    with timer.stage("validate"):
        events = _prepare_events(dataset, config, train_until, prep)
        data_end, weights, trend_weights = _weights(events, config)

    with timer.stage("catalog"):
        items = _build_items(dataset.catalog, events, weights, trend_weights, config.trend_half_life_days, data_end)
        # int32 codes per event: the trainer's memory grows with the events
        item_idx = positions_in(pd.Index(items["item_id"]), events["item_id"]).astype(np.int32)
        cust_codes, customer_index = pd.factorize(events["customer_id"], sort=True)
        cust_codes = cust_codes.astype(np.int32)
        customers = pd.Index(customer_index.astype(str))
        session_codes = pd.factorize(events["session_id"])[0].astype(np.int32)
        parsed = items["package_size"].notna() & items["package_size"].str.strip().ne("")
        size_parse_rate = float(items.loc[parsed, "size_family"].notna().mean()) if parsed.any() else None

    with timer.stage("interactions"):
        is_purchase = events["event_type"].isin(list(PURCHASE_TYPES)).to_numpy()
        weight, count, recent = _profiles(cust_codes, item_idx, weights, trend_weights, is_purchase,
                                          len(customers), len(items))
        stores, store_items, home_store = _stores(events, cust_codes, session_codes, item_idx, weights,
                                                  len(customers), len(items))
        customer_stats = _customer_stats(events.loc[is_purchase, ["timestamp", "price", "quantity"]],
                                         *_rows(is_purchase, cust_codes, session_codes), len(customers), data_end)
        del weights, trend_weights

    with timer.stage("embeddings"):
        factors, als_loss = _embeddings(weight, config, show_progress)
        factors = impute_cold_factors(items, factors)

    with timer.stage("neighbours"):
        group_of, _ = contiguous_ranges(items[list(GROUP_KEYS)])
        switch = cooccurrence(*_rows(is_purchase, cust_codes, item_idx), group_of, len(items),
                              config.max_neighbours, conditional=True)
        switch_to, trial = switching(*_rows(is_purchase, cust_codes, session_codes, item_idx), group_of, len(items),
                                     config.max_neighbours)
        coview = cooccurrence(*_rows(~is_purchase, session_codes, item_idx), group_of, len(items),
                              config.max_neighbours)

    with timer.stage("feedback"):
        pair_feedback, accepted, feedback_counts = _feedback(feedback, items["item_id"], customers)

    with timer.stage("index"):
        index = faiss.IndexFlatIP(factors.shape[1])
        index.add(factors)

    event_count, event_types = len(events), events["event_type"].value_counts()
    # the per-event arrays are done with: the ranker stage trains a second model on most of the events
    del item_idx, cust_codes, session_codes, is_purchase
    with timer.stage("ranker"):
        ranker, reranker, holdout_metrics = _learn_ranker(dataset.catalog, events, config)

    model = ModelData(items=items, factors=factors, switch=switch, coview=coview, switch_to=switch_to, trial=trial,
                      customers=np.asarray(customers, dtype=object), stores=stores, store_items=store_items,
                      home_store=home_store, customer_stats=customer_stats, customer_weight=weight,
                      customer_count=count, customer_recent=recent, feedback=pair_feedback,
                      customer_accepted=accepted, index=index, reranker=reranker)
    manifest = new_manifest(
        model, config, events["timestamp"].min(), data_end, train_until,
        model_counts(model, event_count, {str(name): int(n) for name, n in event_types.items() if n > 0},
                     feedback_counts),
        size_parse_rate, [*dataset.reports, prep], ranker=ranker, als_loss=als_loss, metrics=holdout_metrics)
    return FittedModel(model, manifest, timer, started)


def new_manifest(model: ModelData, config: TrainConfig, data_start: pd.Timestamp, data_end: pd.Timestamp,
                 train_until: datetime | None, counts: dict[str, Any], size_parse_rate: float | None,
                 reports: list[ValidationReport], *, ranker: RankerSection, als_loss: list[float],
                 metrics: dict[str, Any] | None, engine: str = "pandas") -> Manifest:
    """The manifest of a freshly trained model, for every engine (``engine``: what computed the data-heavy
    stages); :func:`save_model` adds the coverage and the stage times."""
    return Manifest(
        version=artifact.new_version(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        data_span=DataSpan(start=data_start.isoformat(), end=data_end.isoformat()),
        train_until=train_until.isoformat() if train_until else None,
        config=config,
        ranker=ranker,
        counts=counts,
        size_parse_rate=size_parse_rate,
        sources=[SourceReport.model_validate(r.as_dict()) for r in reports],
        engine=engine,
        als_loss=als_loss,
        metrics=metrics,
    )


def model_counts(model: ModelData, events: int, event_types: dict[str, int], feedback_counts: dict[str, int]
                 ) -> dict[str, Any]:
    """The manifest's ``counts``: what the model was built from and holds."""
    items = model.items
    return {
        "events": events, "items": len(items), "items_with_events": int((items["n_customers"] > 0).sum()),
        "customers": len(model.customers), "stores": len(model.stores), "groups": int(len(model.group_ptr) - 1),
        "parent_categories": int(len(model.parent_ptr) - 1),
        "co_customer_pairs": int(model.switch.nnz), "coview_pairs": int(model.coview.nnz),
        "switched_to_pairs": int(model.switch_to.nnz), "tried_pairs": int(model.trial.nnz),
        "event_types": event_types,
        **feedback_counts,
    }


def save_model(fitted: FittedModel, out_dir: Path, *, make_current: bool = True, with_report: bool = True
               ) -> TrainResult:
    """Write a fitted model (of either engine) to ``out_dir/<version>``, atomically, with its report unless
    ``with_report`` is false, repointing ``current`` unless ``make_current`` is false."""
    model, manifest, timer = fitted.model, fitted.manifest, fitted.timer
    with timer.stage("report"):  # an in-memory engine for coverage and examples; skipped without a report
        engine = fitted.engine() if with_report else None
        manifest.coverage = report.coverage(engine) if engine is not None else None
        previous = _current_manifest(out_dir) if engine is not None else None

    def write_files(directory: Path) -> None:
        model.save(directory)
        if engine is not None:
            report.write(directory, manifest, engine, previous)

    with timer.stage("write"):
        manifest.stage_seconds = dict(timer.seconds)
        manifest.stage_peak_rss_mb = dict(timer.peak_rss_mb)
        model_dir = artifact.write_model(out_dir, write_files, manifest, make_current=make_current)
    timer.bar.close()
    stage_seconds = {**timer.seconds, "total": round(time.perf_counter() - fitted.started, 3)}
    return TrainResult(model_dir=model_dir, manifest=artifact.read_manifest(model_dir, verify=False),
                       stage_seconds=stage_seconds)
