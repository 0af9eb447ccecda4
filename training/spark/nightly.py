"""``recsys retrain --engine spark``: the nightly job with the candidate trained on Spark, behind the same quality
gate as the single-machine retrain (:mod:`training.nightly`).

The gate answers the hold-out's switch queries with both models on the driver, as served. It needs no event but
the purchases of its customer sample: Spark finds the customers with a purchase, the sample is drawn from them in
id order as the single-machine gate draws it (:func:`training.nightly.sampled_ids`, at most
``GateConfig.max_customers``), and only those customers' purchases are collected to the driver. Of the queries
built from them, at most ``GateConfig.max_queries`` are answered.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from recsys.domain.config import TrainConfig
from recsys.domain.schema import EVENT_COLUMNS, PURCHASE_TYPES, ValidationReport
from recsys.model.registry import current_version
from training.nightly import GateConfig, RetrainResult, judge, sampled_ids
from training.spark.trainer import train_spark

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame


def gate_sample_spark(events: SparkFrame, gate: GateConfig) -> pd.DataFrame:
    """:func:`training.nightly.gate_sample` in Spark: the purchases of the gate's customer sample, collected to the
    driver (the customer ids with a purchase are collected to draw it)."""
    from pyspark.sql import functions as F

    purchases = events.filter(F.col("event_type").isin(list(PURCHASE_TYPES)))
    ids = [row[0] for row in purchases.select("customer_id").distinct().collect()]
    customers = np.sort(np.asarray(ids, dtype=str)).astype(object)
    chosen = sampled_ids(customers, gate)
    if chosen is not None:
        wanted = purchases.sparkSession.createDataFrame(pd.DataFrame({"customer_id": chosen}),
                                                        schema="customer_id string")
        purchases = purchases.join(F.broadcast(wanted), on="customer_id")
    sample = purchases.select(*EVENT_COLUMNS).toPandas()
    return sample.assign(timestamp=sample["timestamp"].astype("datetime64[ns]"))


def retrain_spark(events: SparkFrame, catalog: pd.DataFrame, reports: list[ValidationReport], models: Path,
                  config: TrainConfig | None = None, gate: GateConfig | None = None, *, show_progress: bool = True,
                  feedback: pd.DataFrame | None = None, als: str = "driver") -> RetrainResult:
    """:func:`training.nightly.retrain` with the candidate trained by :func:`training.spark.trainer.train_spark`
    (``events``, ``catalog`` and ``reports`` as :func:`training.spark.reading.read_sources` reads them): trained
    into ``models`` without being made current, gated on the purchases of a bounded customer sample
    (:func:`gate_sample_spark`), promoted only if it passes, the outcome logged."""
    gate = gate or GateConfig()
    current = current_version(models) if models.is_dir() else None
    trained = train_spark(events.sparkSession, events, catalog, reports, config, out_dir=models,
                          show_progress=show_progress, make_current=False, feedback=feedback, als=als)
    return judge(models, trained.model_dir.name, current, lambda: gate_sample_spark(events, gate), gate)
