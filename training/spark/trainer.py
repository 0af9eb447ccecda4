"""``recsys train --engine spark``: Spark's aggregates, then the driver-side stages of ``training.pipeline``.

What runs where:

- in Spark: reading and validating the events, weights, the item, customer and store aggregates, and the pair
  signals (:mod:`training.spark.aggregates`);
- ALS: ``implicit`` on the driver from the collected customer x item matrix (``als="driver"``, the default), or
  Spark MLlib's implicit ALS (``als="mllib"``, :mod:`training.spark.als`);
- on the driver, from Spark's collected outputs: the cold-start factors, feedback, the FAISS index, the
  manifest, the report and the write, with the single-machine trainer's own functions;
- the ranker: its inner model (trained before the last ``validation_weeks``) is trained by this function, in
  Spark, on every event before the validation start, as one machine trains it on every event; only the events of
  a seeded sample of at most ``RankerConfig.max_customers`` customers are collected to the driver, where
  ``pipeline._learn_ranker`` builds the validation queries and the held-out baselines from them (with no more
  customers than that, the sample is all the events, as on one machine).

The model directory is the one ``recsys serve`` loads; its manifest records ``engine: "spark"``.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import pandas as pd

from recsys.config import TrainConfig
from recsys.manifest import RankerSection
from recsys.model import ModelData
from recsys.schema import EVENT_COLUMNS, ValidationReport
from training.catalog import impute_cold_factors
from training.pipeline import (
    ID_COLUMNS,
    FittedModel,
    StageTimer,
    TrainResult,
    _categorical,
    _embeddings,
    _feedback,
    _learn_ranker,
    model_counts,
    new_manifest,
    sampled_customers,
    save_model,
)
from training.spark.aggregates import compute_aggregates
from training.spark.als import ALS_ENGINES, mllib_item_factors

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

ENGINE = "spark"


def ranker_events(kept: SparkFrame, customers: pd.Index, config: TrainConfig) -> pd.DataFrame:
    """The events of the customers ``pipeline._customer_sample`` would choose, collected to the driver as the
    trainer's compact frame (ids categorical with sorted categories)."""
    from pyspark.sql import functions as F

    positions = sampled_customers(len(customers), config.ranker.max_customers, config.ranker.seed)
    if positions is not None:  # customers: those with events, in id order, as _customer_sample counts them
        chosen = np.asarray(customers)[positions]
        wanted = kept.sparkSession.createDataFrame(pd.DataFrame({"customer_id": chosen.astype(object)}),
                                                   schema="customer_id string")
        kept = kept.join(F.broadcast(wanted), on="customer_id")
    frame = kept.select(*EVENT_COLUMNS).toPandas()
    frame = frame.sort_values(["timestamp", "customer_id", "session_id", "item_id"], kind="mergesort")
    frame = frame.reset_index(drop=True)
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame.assign(**{column: _categorical(frame[column].astype("string")) for column in ID_COLUMNS})


def learn_ranker(spark: SparkSession, kept: SparkFrame | None, customers: pd.Index, data_end: pd.Timestamp,
                 catalog: pd.DataFrame, config: TrainConfig, als: str = "driver"
                 ) -> tuple[RankerSection, str, dict[str, Any] | None]:
    """``fit_spark``'s ranker stage: ``pipeline._learn_ranker`` with the inner model fitted by ``fit_spark`` on
    every validated event (``kept``, cached: not read from the source again; None with the ranker off) before the
    validation start, and the validation queries built from the collected events of the customer sample.
    ``customers``: those with events, in id order; ``data_end``: the last event of all the data, from which the
    validation start is counted back."""

    def fit_inner(inner_config: TrainConfig, until: datetime) -> FittedModel:
        return fit_spark(spark, kept, catalog, [], inner_config, train_until=until, show_progress=False, als=als)

    sample = ranker_events(kept, customers, config) if config.ranker.enabled else pd.DataFrame()
    return _learn_ranker(catalog, sample, config, data_end=data_end, fit_inner=fit_inner)


def train_spark(spark: SparkSession, events: SparkFrame, catalog: pd.DataFrame, reports: list[ValidationReport],
                config: TrainConfig | None = None, *, out_dir: Path = Path("models"),
                train_until: datetime | None = None, show_progress: bool = True, make_current: bool = True,
                with_report: bool = True, feedback: pd.DataFrame | None = None, als: str = "driver") -> TrainResult:
    """``training.pipeline.train`` with the data-heavy stages in Spark: :func:`fit_spark`, then
    ``pipeline.save_model``."""
    fitted = fit_spark(spark, events, catalog, reports, config, train_until=train_until,
                       show_progress=show_progress, feedback=feedback, als=als)
    return save_model(fitted, out_dir, make_current=make_current, with_report=with_report)


def fit_spark(spark: SparkSession, events: SparkFrame, catalog: pd.DataFrame, reports: list[ValidationReport],
              config: TrainConfig | None = None, *, train_until: datetime | None = None, show_progress: bool = True,
              feedback: pd.DataFrame | None = None, als: str = "driver") -> FittedModel:
    """``training.pipeline.fit_model`` with the data-heavy stages in Spark: a model in memory. ``events``: the
    canonical schema (:func:`training.spark.reading.read_sources`); ``catalog``: one row per item, on the driver.
    ``als``: "driver" (``implicit`` on the collected matrix) or "mllib" (Spark MLlib's ALS, no training loss)."""
    if als not in ALS_ENGINES:
        raise ValueError(f"als must be one of {', '.join(ALS_ENGINES)}, not {als!r}")
    config = config or TrainConfig()
    timer = StageTimer(show_progress)
    started = time.perf_counter()

    with timer.stage("spark"):  # validate, catalog, interactions and neighbours, all in Spark
        # the validated events stay cached for the ranker only (its sample and its inner model's training)
        aggregates = compute_aggregates(spark, events, catalog, config, train_until,
                                        keep_events=config.ranker.enabled, keep_ratings=als == "mllib")
    items, customers = aggregates.items, aggregates.customers

    with timer.stage("embeddings"):
        if aggregates.ratings is not None:
            factors, als_loss = mllib_item_factors(aggregates.ratings, len(items), config), []
            aggregates.ratings.unpersist()
        else:
            factors, als_loss = _embeddings(aggregates.customer_weight, config, show_progress)
        factors = impute_cold_factors(items, factors)

    with timer.stage("feedback"):
        pair_feedback, accepted, feedback_counts = _feedback(feedback, items["item_id"], customers)

    with timer.stage("index"):
        index = faiss.IndexFlatIP(factors.shape[1])
        index.add(factors)

    with timer.stage("ranker"):
        ranker, reranker, holdout_metrics = learn_ranker(spark, aggregates.events, customers, aggregates.data_end,
                                                         catalog, config, als)
        if aggregates.events is not None:
            aggregates.events.unpersist()

    model = ModelData(items=items, factors=factors, switch=aggregates.switch, coview=aggregates.coview,
                      switch_to=aggregates.switch_to, trial=aggregates.trial,
                      customers=np.asarray(customers, dtype=object), stores=aggregates.stores,
                      store_items=aggregates.store_items, home_store=aggregates.home_store,
                      customer_stats=aggregates.customer_stats, customer_weight=aggregates.customer_weight,
                      customer_count=aggregates.customer_count, customer_recent=aggregates.customer_recent,
                      feedback=pair_feedback, customer_accepted=accepted, index=index, reranker=reranker)
    manifest = new_manifest(
        model, config, aggregates.data_start, aggregates.data_end, train_until,
        model_counts(model, aggregates.event_count, aggregates.event_types, feedback_counts),
        aggregates.size_parse_rate, [*reports, aggregates.report], ranker=ranker, als_loss=als_loss,
        metrics=holdout_metrics, engine=ENGINE)
    return FittedModel(model, manifest, timer, started)

