"""``recsys train --engine spark``: Spark's aggregates, then the driver-side stages of ``training.pipeline``.

What runs where:

- in Spark: reading and validating the events, weights, the item, customer and store aggregates, and the pair
  signals (:mod:`training.spark.aggregates`);
- ALS: ``implicit`` on the driver from the collected customer x item matrix (``als="driver"``, the default), or
  Spark MLlib's implicit ALS (``als="mllib"``, :mod:`training.spark.als`);
- on the driver, from Spark's collected outputs (:class:`training.aggregates.Aggregates`, as the pandas backend
  computes them): the cold-start factors, feedback, the FAISS index, the ranker, the manifest, the report and
  the write, with the single-machine trainer's own driver (``training.assembly.assemble``,
  ``training.pipeline.save_model``);
- the ranker: its inner model (trained before the last ``validation_weeks``) is trained by this function, in
  Spark, on every event before the validation start, as one machine trains it on every event; only the events of
  a seeded sample of at most ``RankerConfig.max_customers`` customers are collected to the driver, where
  ``training.selection.learn_ranker`` builds the validation queries and the held-out baselines from them (with no more
  customers than that, the sample is all the events, as on one machine).

The model directory is the one ``recsys serve`` loads; its manifest records ``engine: "spark"``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.domain.config import TrainConfig
from recsys.domain.schema import EVENT_COLUMNS, ValidationReport
from training.assembly import FittedModel, RankerOutcome, Run, assemble
from training.events import ID_COLUMNS, categorical
from training.pipeline import TrainResult, save_model
from training.selection import learn_ranker, sampled_customers
from training.spark.aggregates import compute_aggregates
from training.spark.als import ALS_ENGINES, mllib_item_factors

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

ENGINE = "spark"


def ranker_events(kept: SparkFrame, customers: pd.Index, config: TrainConfig) -> pd.DataFrame:
    """The events of the customers ``selection.customer_sample`` would choose, collected to the driver as the
    trainer's compact frame (ids categorical with sorted categories)."""
    from pyspark.sql import functions as F

    positions = sampled_customers(len(customers), config.ranker.max_customers, config.ranker.seed)
    if positions is not None:  # customers: those with events, in id order, as customer_sample counts them
        chosen = np.asarray(customers)[positions]
        wanted = kept.sparkSession.createDataFrame(pd.DataFrame({"customer_id": chosen.astype(object)}),
                                                   schema="customer_id string")
        kept = kept.join(F.broadcast(wanted), on="customer_id")
    frame = kept.select(*EVENT_COLUMNS).toPandas()
    frame = frame.sort_values(["timestamp", "customer_id", "session_id", "item_id"], kind="mergesort")
    frame = frame.reset_index(drop=True)
    frame["timestamp"] = frame["timestamp"].astype("datetime64[ns]")
    return frame.assign(**{column: categorical(frame[column].astype("string")) for column in ID_COLUMNS})


def spark_ranker(spark: SparkSession, kept: SparkFrame | None, customers: pd.Index, data_end: pd.Timestamp,
                 catalog: pd.DataFrame, config: TrainConfig, *, als: str = "driver",
                 step: Callable[[str], None] = lambda message: None) -> RankerOutcome:
    """``fit_spark``'s ranker stage: ``selection.learn_ranker`` with the inner model fitted by ``fit_spark`` on
    every validated event (``kept``, cached: not read from the source again; None with the ranker off) before the
    validation start, and the validation queries built from the collected events of the customer sample.
    ``customers``: those with events, in id order; ``data_end``: the last event of all the data, from which the
    validation start is counted back."""

    def fit_inner(inner_config: TrainConfig, until: datetime) -> FittedModel:
        return fit_spark(spark, kept, catalog, [], inner_config, train_until=until, show_progress=False, als=als)

    sample = ranker_events(kept, customers, config) if config.ranker.enabled and kept is not None \
        else pd.DataFrame()
    return learn_ranker(catalog, sample, config, fit_inner, data_end=data_end, step=step)


def train_spark(spark: SparkSession, events: SparkFrame, catalog: pd.DataFrame, reports: list[ValidationReport],
                config: TrainConfig | None = None, *, out_dir: Path = Path("models"),
                train_until: datetime | None = None, show_progress: bool = True, make_current: bool = True,
                with_report: bool = True, feedback: pd.DataFrame | None = None, als: str = "driver",
                assortment: pd.DataFrame | None = None) -> TrainResult:
    """``training.pipeline.train`` with the data-heavy stages in Spark: :func:`fit_spark`, then
    ``pipeline.save_model``."""
    fitted = fit_spark(spark, events, catalog, reports, config, train_until=train_until,
                       show_progress=show_progress, feedback=feedback, als=als, assortment=assortment)
    return save_model(fitted, out_dir, make_current=make_current, with_report=with_report)


def fit_spark(spark: SparkSession, events: SparkFrame | None, catalog: pd.DataFrame, reports: list[ValidationReport],
              config: TrainConfig | None = None, *, train_until: datetime | None = None, show_progress: bool = True,
              feedback: pd.DataFrame | None = None, als: str = "driver", assortment: pd.DataFrame | None = None
              ) -> FittedModel:
    """``training.pipeline.fit_model`` with the aggregates computed in Spark: a model in memory. ``events``: the
    canonical schema (:func:`training.spark.reading.read_sources`); ``catalog``: one row per item, on the driver.
    ``als``: "driver" (``implicit`` on the collected matrix) or "mllib" (Spark MLlib's ALS, no training loss)."""
    if als not in ALS_ENGINES:
        raise ValueError(f"als must be one of {', '.join(ALS_ENGINES)}, not {als!r}")
    run = Run(config or TrainConfig(), train_until=train_until, feedback=feedback, show_progress=show_progress,
              assortment=assortment)
    with run.timer.stage("spark"):  # validate, catalog, interactions and neighbours, all in Spark
        # the validated events stay cached for the ranker only (its sample and its inner model's training)
        aggregates = compute_aggregates(spark, events, catalog, run.config, train_until,
                                        keep_events=run.config.ranker.enabled, keep_ratings=als == "mllib")
    ratings = aggregates.ratings

    def mllib_factors() -> tuple[np.ndarray, list[float]]:
        factors = mllib_item_factors(ratings, len(aggregates.items), run.config)
        ratings.unpersist()
        return factors, []

    def ranker() -> RankerOutcome:
        outcome = spark_ranker(spark, aggregates.events, aggregates.customers, aggregates.data_end, catalog,
                               run.config, als=als, step=run.timer.step)
        if aggregates.events is not None:
            aggregates.events.unpersist()
        return outcome

    return assemble(aggregates, run, reports=reports, learn_ranker=ranker,
                    factors=mllib_factors if ratings is not None else None, engine=ENGINE)
