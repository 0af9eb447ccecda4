"""Model assembly, the stages every engine runs on the driver once it has its :class:`training.aggregates.Aggregates`:
the item embeddings (ALS), the cold-start factors, the feedback signals, the FAISS index and the ranker stage,
then the model and its manifest (:func:`assemble`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faiss
import numpy as np
import pandas as pd
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recsys.domain.config import TrainConfig
from recsys.domain.schema import ValidationReport
from recsys.model import artifact
from recsys.model.data import PAIR_SIGNALS, ModelData
from recsys.model.manifest import DataSpan, Manifest, RankerSection, SourceReport
from recsys.query.availability import EVERYTHING
from recsys.query.engine import SubstituteEngine
from training.aggregates import Aggregates
from training.assortment import build_assortment
from training.catalog import impute_cold_factors
from training.progress import StageTimer

#: the ranker stage's result (training.selection.learn_ranker): the manifest's ``ranker`` section, the re-ranker's
#: model text ("" when none) and the held-out metrics (None without held-out queries)
RankerOutcome = tuple[RankerSection, str, dict[str, Any] | None]
#: fits the ranker's inner model in memory: (config with the ranker off, train_until) -> the fitted model
InnerFit = Callable[[TrainConfig, datetime], "FittedModel"]


@dataclass
class Run:
    """One training run: its options, and its stages timed so far."""

    config: TrainConfig
    train_until: datetime | None = None
    feedback: pd.DataFrame | None = None  # substitution decisions (recsys.state.store.read_decisions)
    assortment: pd.DataFrame | None = None  # the retailer's assortment file (training.assortment.read_assortment)
    show_progress: bool = True
    timer: StageTimer = field(init=False)
    started: float = field(init=False, default_factory=time.perf_counter)  # when training started

    def __post_init__(self) -> None:
        self.timer = StageTimer(self.show_progress)


@dataclass
class FittedModel:
    """A model trained in memory and not written yet (:func:`save_model` writes it): the model, its manifest,
    and the stages timed so far."""

    model: ModelData
    manifest: Manifest
    timer: StageTimer
    started: float  # time.perf_counter() when training started

    def engine(self) -> SubstituteEngine:
        """An engine on the model as it is, in memory (what the trainer's own evaluations query). It offers every
        item, evidence of a store having it or not: the trainer measures how well candidates are ranked, and
        which items a store has is decided where the model serves (``recsys evaluate --availability`` measures
        what that costs)."""
        return SubstituteEngine(self.model, self.manifest, policy=EVERYTHING)


def assemble(aggregates: Aggregates, run: Run, *, reports: list[ValidationReport],
             learn_ranker: Callable[[], RankerOutcome],
             factors: Callable[[], tuple[np.ndarray, list[float]]] | None = None, engine: str = "pandas"
             ) -> FittedModel:
    """The model from an engine's ``aggregates``, in the stages embeddings, feedback, index and ranker of ``run``:
    ALS on the customer x item weights (or the engine's own ``factors``: item factors and the loss per
    iteration), cold-start factors for items without events, the feedback signals, the FAISS index, and the
    ranker (``learn_ranker``). ``reports``: the loaders' reports; ``engine``: what computed the aggregates."""
    config, timer, items, customers = run.config, run.timer, aggregates.items, aggregates.customers
    with timer.stage("embeddings"):
        if factors is None:
            item_factors, als_loss = als_factors(aggregates.customer_weight, config, timer.bars)  # a log: no bar
        else:
            item_factors, als_loss = factors()
        item_factors = impute_cold_factors(items, item_factors)

    with timer.stage("feedback"):
        pair_feedback, accepted, feedback_counts = feedback_signals(run.feedback, items["item_id"], customers)

    with timer.stage("index"):
        index = faiss.IndexFlatIP(item_factors.shape[1])
        index.add(item_factors)

    with timer.stage("ranker"):
        ranker, reranker, holdout_metrics = learn_ranker()

    assortment, assortment_report = build_assortment(aggregates.sales, items["item_id"], config.assortment,
                                                     run.assortment)

    model = ModelData(items=items, factors=item_factors, bought_instead=aggregates.bought_instead,
                      viewed_together=aggregates.viewed_together, switched_to=aggregates.switched_to,
                      tried=aggregates.tried,
                      customers=np.asarray(customers, dtype=object), stores=aggregates.stores,
                      store_items=aggregates.store_items, home_store=aggregates.home_store,
                      customer_stats=aggregates.customer_stats, customer_weight=aggregates.customer_weight,
                      customer_count=aggregates.customer_count, customer_recent=aggregates.customer_recent,
                      accepted_instead=pair_feedback, customer_accepted=accepted, index=index, reranker=reranker,
                      assortment=assortment)
    manifest = new_manifest(
        model, config, data_start=aggregates.data_start, data_end=aggregates.data_end, train_until=run.train_until,
        counts=model_counts(model, aggregates.event_count, aggregates.event_types, feedback_counts),
        size_parse_rate=aggregates.size_parse_rate, reports=[*reports, aggregates.report], ranker=ranker,
        als_loss=als_loss, metrics=holdout_metrics, engine=engine)
    manifest.assortment = assortment_report
    return FittedModel(model, manifest, timer, run.started)


def als_factors(weight: sp.csr_matrix, config: TrainConfig, show_progress: bool
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


def feedback_signals(decisions: pd.DataFrame | None, item_ids: pd.Series, customers: pd.Index
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


def new_manifest(model: ModelData, config: TrainConfig, *, data_start: pd.Timestamp, data_end: pd.Timestamp,
                 train_until: datetime | None, counts: dict[str, Any], size_parse_rate: float | None,
                 reports: list[ValidationReport], ranker: RankerSection, als_loss: list[float],
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
        **{f"{name}_pairs": int(getattr(model, name).nnz) for name in PAIR_SIGNALS if name != "accepted_instead"},
        "event_types": event_types,
        **feedback_counts,
    }
