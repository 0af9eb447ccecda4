"""``recsys retrain``: the nightly job. Train on the latest data, gate the new model against the current one
on the same hold-out, promote it only if it is not worse by more than a margin.

The gate's hold-out is the switch queries (see :mod:`training.queries`) of the last ``holdout_weeks`` of the
latest data, answered by both models through the engine, exactly as served. They are built from the purchases of a
seeded sample of at most ``max_customers`` customers (:func:`gate_sample`) and at most ``max_queries`` of them are
answered, so the gate holds a bounded share of the data on one machine whatever the engine that trained the
candidate (:mod:`training.spark.nightly` collects only that sample from Spark). Both models may have seen those
weeks (the new one always has), so the gate is a *regression check* (broken data, a bad config, a code change
that hurts ranking), not an unbiased estimate: that is ``recsys evaluate``'s job, and every model's report
carries held-out numbers measured before its ranker saw the data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.domain.config import TrainConfig
from recsys.domain.schema import PURCHASE_TYPES, Dataset
from recsys.domain.types import Intent
from recsys.model import artifact
from recsys.model.registry import HEADLINE_METRICS, INTENT_METHODS, current_version, headline, promote
from recsys.query.engine import SubstituteEngine
from training import evaluation
from training.pipeline import train
from training.queries import build_queries
from training.selection import sampled_customers

LOG: Final[str] = "retrain.jsonl"


class GateConfig(BaseModel):
    """When a retrained model may replace the current one."""

    model_config = ConfigDict(extra="forbid")

    max_drop: float = Field(0.01, ge=0.0, le=1.0,
                            description="largest allowed drop of each gated metric (absolute, e.g. HR@3 0.50 -> 0.49)")
    holdout_weeks: float = Field(4.0, gt=0.0, description="the last weeks of data, whose switches both models answer")
    max_customers: int = Field(10_000, ge=1, description="customers (a seeded sample of those with a purchase) "
                                                         "whose purchases the hold-out queries are built from")
    max_queries: int = Field(5_000, ge=1, description="queries sampled (seeded) from the hold-out")
    min_queries: int = Field(100, ge=1, description="fewer hold-out queries than this refuses: nothing to judge on")
    seed: int = 0


@dataclass
class RetrainResult:
    candidate: str
    current: str | None  # the model current before this run
    promoted: bool
    message: str
    split: str | None = None
    sample_customers: int = 0  # the customers whose purchases the hold-out queries were built from
    queries: dict[str, dict[str, int]] = field(default_factory=dict)  # version -> subset -> queries
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # version -> gated metric -> value
    finished_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


def gate_metrics(engine: SubstituteEngine, events: pd.DataFrame, split: pd.Timestamp, gate: GateConfig
                 ) -> tuple[dict[str, float], dict[str, int]]:
    """The gated metrics of ``engine`` on the switch queries after ``split`` (every intent's, see
    :data:`recsys.model.registry.HEADLINE_METRICS`), and the query counts."""
    queries = build_queries(events, engine, split).sample(gate.max_queries, gate.seed)
    if len(queries) == 0:
        return {}, {"all": 0, "new_to_customer": 0}
    # discover as of the split: both models have trained on the hold-out weeks, whose purchases are the very items
    # its new-to-customer queries are judged on
    rankers = {**evaluation.intent_rankers(engine),
               INTENT_METHODS[Intent.discover]: evaluation.discover_as_of(engine, events, split)}
    metrics, _ = evaluation.score(engine, rankers, queries)
    values = {name: round(value, 5) for name, value in headline(metrics).items()}
    return values, {"all": len(queries), "new_to_customer": queries.n_new}


def sampled_ids(customers: np.ndarray, gate: GateConfig) -> np.ndarray | None:
    """The ids of the gate's customer sample among ``customers`` (every customer with a purchase, as text, sorted);
    None when there are no more than ``max_customers``: all of them. Every engine draws the sample here."""
    positions = sampled_customers(len(customers), gate.max_customers, gate.seed)
    return None if positions is None else customers[positions]


def gate_sample(events: pd.DataFrame, gate: GateConfig) -> pd.DataFrame:
    """The purchases of the gate's customer sample (:func:`sampled_ids`): all the hold-out queries need."""
    purchases = events[events["event_type"].isin(list(PURCHASE_TYPES))]
    customer_ids = purchases["customer_id"].astype(str)
    chosen = sampled_ids(np.sort(np.asarray(customer_ids.unique(), dtype=object)), gate)
    return purchases if chosen is None else purchases[customer_ids.isin(chosen)]


def retrain(dataset: Dataset, models: Path, config: TrainConfig | None = None, gate: GateConfig | None = None,
            show_progress: bool = True, feedback: pd.DataFrame | None = None) -> RetrainResult:
    """Train a candidate into ``models`` (not current), gate it, promote it if it passes, log the outcome."""
    gate = gate or GateConfig()
    current = current_version(models) if models.is_dir() else None
    trained = train(dataset, config, out_dir=models, show_progress=show_progress, make_current=False,
                    feedback=feedback)
    return judge(models, trained.model_dir.name, current, lambda: gate_sample(dataset.events, gate), gate)


def judge(models: Path, candidate: str, current: str | None, holdout_events: Callable[[], pd.DataFrame],
          gate: GateConfig) -> RetrainResult:
    """Gate ``candidate``, a model in ``models`` trained by any engine and not current, against ``current`` (the
    model current before it was trained; None: promoted without a gate), promote it if it passes, log the outcome.
    ``holdout_events``: the purchases the hold-out queries are built from (:func:`gate_sample`), asked for only when
    there is a current model to judge against."""
    if current is None:
        promote(models, candidate)
        result = RetrainResult(candidate, None, True, "no current model: promoted without a gate")
        return _log(models, result)

    manifest = artifact.read_manifest(models / candidate, verify=False)
    split = pd.Timestamp(manifest.data_span.end) - pd.Timedelta(weeks=gate.holdout_weeks)
    events = holdout_events()
    result = RetrainResult(candidate, current, False, "", split=split.isoformat(),
                           sample_customers=int(events["customer_id"].nunique()))
    for version in (candidate, current):
        try:
            engine = SubstituteEngine.load(models / version)
        except artifact.ArtifactError as exc:
            if version == candidate:
                raise
            promote(models, candidate)  # the current model is unreadable: anything loadable is better
            result.promoted, result.message = True, f"current model {current} is unusable ({exc}): promoted"
            return _log(models, result)
        result.metrics[version], result.queries[version] = gate_metrics(engine, events, split, gate)

    if result.queries[candidate]["all"] < gate.min_queries:
        result.message = (f"refused: only {result.queries[candidate]['all']} hold-out queries after {split.date()} "
                          f"(need {gate.min_queries}); more data or a longer --holdout-weeks")
        return _log(models, result)
    drops = {name: result.metrics[current][name] - result.metrics[candidate][name] for name in HEADLINE_METRICS
             if name in result.metrics[current] and name in result.metrics[candidate]}
    worse = {name: drop for name, drop in drops.items() if drop > gate.max_drop}
    if worse:
        result.message = "refused: " + ", ".join(
            f"{name} {result.metrics[candidate][name]:.4f} vs current {result.metrics[current][name]:.4f} "
            f"(-{drop:.4f} > {gate.max_drop})" for name, drop in worse.items())
    else:
        promote(models, candidate)
        result.promoted = True
        result.message = "promoted: " + ", ".join(
            f"{name} {result.metrics[candidate][name]:.4f} ({-drop:+.4f})" for name, drop in drops.items())
    return _log(models, result)


def _log(models: Path, result: RetrainResult) -> RetrainResult:
    """Append the outcome as one JSON line to ``models/retrain.jsonl`` (the nightly job's history)."""
    with (models / LOG).open("a") as handle:
        handle.write(json.dumps(asdict(result), sort_keys=True) + "\n")
    return result

