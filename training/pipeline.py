"""The offline trainer's driver: events + catalog -> a model in memory (:func:`fit_model`) -> a versioned model
directory (:func:`save_model`, see ``recsys.model.artifact``); :func:`train` does both.

The steps, each in its own module: event preparation (:mod:`training.events`), the aggregates
(:mod:`training.aggregates`, or :mod:`training.spark.aggregates` on Spark), model assembly
(:mod:`training.assembly`) with the ranker stage (:mod:`training.selection`), and the report
(:mod:`training.report`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from recsys.domain.config import TrainConfig
from recsys.domain.schema import Dataset
from recsys.model import artifact
from recsys.model.manifest import Manifest
from training import report
from training.aggregates import aggregate
from training.assembly import FittedModel, Run, assemble
from training.selection import learn_ranker

__all__ = ["FittedModel", "TrainResult", "fit_model", "save_model", "train"]


@dataclass
class TrainResult:
    """A model written to its directory: where, its manifest, and the seconds of each stage."""

    model_dir: Path
    manifest: Manifest
    stage_seconds: dict[str, float] = field(default_factory=dict)


def train(dataset: Dataset, config: TrainConfig | None = None, *, out_dir: Path = Path("models"),
          train_until: datetime | None = None, show_progress: bool = True, make_current: bool = True,
          with_report: bool = True, feedback: pd.DataFrame | None = None,
          assortment: pd.DataFrame | None = None) -> TrainResult:
    """Train a model from ``dataset`` and write it to ``out_dir/<version>`` (repointing ``current`` unless
    ``make_current`` is false), with its report (see :mod:`training.report`) unless ``with_report`` is false:
    :func:`fit_model`, then :func:`save_model`."""
    fitted = fit_model(dataset, config, train_until=train_until, feedback=feedback, show_progress=show_progress,
                       assortment=assortment)
    return save_model(fitted, out_dir, make_current=make_current, with_report=with_report)


def fit_model(dataset: Dataset, config: TrainConfig | None = None, *, train_until: datetime | None = None,
              feedback: pd.DataFrame | None = None, show_progress: bool = True,
              assortment: pd.DataFrame | None = None) -> FittedModel:
    """Train a model from ``dataset``, in memory. ``train_until``: events after it are left out (counted);
    ``feedback``: substitution decisions (:func:`recsys.state.store.read_decisions`), the strongest signal;
    ``assortment``: what each store carries (:func:`training.assortment.read_assortment`), else inferred."""
    run = Run(config or TrainConfig(), train_until=train_until, feedback=feedback, show_progress=show_progress,
              assortment=assortment)
    aggregates, events = aggregate(dataset, run.config, train_until, timer=run.timer)
    inner_data = Dataset(events=events, catalog=dataset.catalog, reports=[])

    def fit_inner(inner_config: TrainConfig, until: datetime) -> FittedModel:
        return fit_model(inner_data, inner_config, train_until=until, show_progress=False)

    return assemble(aggregates, run, reports=dataset.reports,
                    learn_ranker=lambda: learn_ranker(dataset.catalog, events, run.config, fit_inner,
                                                      step=run.timer.step))


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


def _current_manifest(out_dir: Path) -> Manifest | None:
    """The manifest of the model that is current before this one (for the report's comparison)."""
    try:
        return artifact.read_manifest(out_dir / artifact.CURRENT, verify=False)
    except artifact.ArtifactError:
        return None
