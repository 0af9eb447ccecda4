"""``recsys train``, ``retrain`` and ``add-items``: models from data."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from recsys.cli import summary
from recsys.cli.common import (
    ExitStatus,
    ProgressOption,
    console,
    describe_validation_error,
    fail,
    option_name,
    print_table,
    warn_password_in_argv,
)
from recsys.cli.models import point_replicas

if TYPE_CHECKING:
    import pandas as pd

    from recsys.domain.config import TrainConfig
    from recsys.domain.schema import Dataset, ValidationReport
    from training.mapping import DataMapping
    from training.pipeline import TrainResult


def _summary(result: TrainResult) -> Table:
    from recsys.model.artifact import directory_size

    manifest = result.manifest
    table = Table(title="training summary", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for source in manifest.sources:
        table.add_row(f"rows: {source.source}", summary.rows_line(source.rows_read, source.rows_used, source.skipped))
    span = manifest.data_span
    table.add_row("data span", f"{span.start} .. {span.end}")
    for key, value in manifest.counts.items():
        table.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, dict) else f"{value:,}")
    rate = manifest.size_parse_rate
    table.add_row("package sizes parsed", "no sizes in data" if rate is None else f"{rate:.2%}")
    for stage, seconds in result.stage_seconds.items():
        table.add_row(f"time: {stage}", f"{seconds:.2f} s")
    table.add_row("model size", f"{directory_size(result.model_dir) / 1e6:.1f} MB")
    table.add_row("model version", manifest.version)
    return table


class Engine(str, Enum):
    """Where ``recsys train`` computes the data-heavy stages."""

    pandas = "pandas"
    spark = "spark"


class SparkAls(str, Enum):
    """Where ``recsys train --engine spark`` fits ALS (see docs/spark.md)."""

    driver = "driver"
    mllib = "mllib"


EngineOption = Annotated[Engine, typer.Option(
    help="pandas: one machine (default); spark: the data-heavy stages on Spark (pip install "
         "'recsys\\[spark]'), the rest on the driver (see docs/spark.md)")]
SparkMasterOption = Annotated[str | None, typer.Option(
    help="with --engine spark: the Spark master URL (local\\[4], spark://host:7077, yarn); default: what "
         "spark-submit set, else local\\[*]")]
AlsOption = Annotated[SparkAls | None, typer.Option(
    help="with --engine spark: driver (implicit on the collected matrix, the default) or mllib (Spark MLlib, "
         "for a matrix the driver cannot hold)")]
DriverMemoryOption = Annotated[str | None, typer.Option(
    help="with --engine spark: the Spark driver's memory (4g, 512m); default in local mode, where the executors "
         "run in the driver: half of this machine's memory, at least 2g (see docs/spark.md)")]
#: a JVM memory size as Spark reads one: a number with an optional unit (no unit: MiB)
_MEMORY_SIZE = re.compile(r"[0-9]+([kmgt]b?)?", re.IGNORECASE)


FeedbackOption = Annotated[str | None, typer.Option(
    help="substitution feedback, the strongest signal: the server's state file (RECSYS_STATE_PATH) or state URL "
         "(RECSYS_STATE_URL: sqlite:///path or postgresql://..., where every replica records it)")]


def _decisions(source: str | None) -> pd.DataFrame | None:
    import sqlite3

    from recsys.state.store import StateUnavailableError, read_decisions, redact

    if source is None:
        return None
    shown = redact(source)
    try:
        decisions = read_decisions(source)  # a URL, a libpq connection string or a file's path
    except (OSError, ValueError, sqlite3.Error, StateUnavailableError) as exc:
        raise fail(f"--feedback {shown}: {exc}") from exc
    console.print(f"feedback: {len(decisions):,} decisions from {shown}")
    return decisions


DataOption = Annotated[list[str] | None, typer.Option(
    help="'completejourney' (default), an event log (.csv/.tsv/.parquet), a directory of parquet parts "
         "(hive partitions too) or a quoted glob, or a URL (file:, and with --engine spark s3a://, hdfs://, "
         "gs://...); repeat to combine")]
MappingOption = Annotated[Path | None, typer.Option(
    help="TOML naming your columns, an events and a catalog section (see docs/training-and-data.md, docs/mappings/)")]
# a string, not a Path: a Path would make s3a://bucket/x the local path s3a:/bucket/x
CatalogOption = Annotated[str | None, typer.Option(
    help="product file (or parquet directory/glob, or a URL as for --data) joined to the events by item id; "
         "catalog-only items are cold-start items, events for items missing from it are skipped")]


AssortmentOption = Annotated[Path | None, typer.Option(
    help="what each store carries: parquet or CSV with a store and an item id column (the mapping's "
         "[assortment] section names them); without it the trainer infers it from sales (docs/operations.md)")]


def _assortment(path: Path | None, mapping: Path | None) -> pd.DataFrame | None:
    """The ``--assortment`` file read (None without one); a bad one fails the command naming file and column."""
    from recsys.domain.schema import DataValidationError
    from training.assortment import read_assortment

    if path is None:
        return None
    try:
        frame: pd.DataFrame = read_assortment(path, _mapping(mapping))
        return frame
    except DataValidationError as exc:
        raise fail(escape(str(exc))) from exc


def _mapping(path: Path | None) -> DataMapping | None:
    """The ``--mapping`` file parsed (None without one); a bad one fails the command with a message."""
    from recsys.domain.schema import DataValidationError
    from training.mapping import DataMapping

    if path is None:
        return None
    try:
        return DataMapping.from_toml(path)
    except DataValidationError as exc:
        raise fail(str(exc)) from exc


def _train_config(path: Path | None) -> TrainConfig:
    """The TrainConfig of ``--config`` (JSON), else the defaults; a bad one fails the command with a message."""
    from pydantic import ValidationError

    from recsys.domain.config import TrainConfig

    try:
        return TrainConfig.model_validate_json(path.read_text()) if path else TrainConfig()
    except OSError as exc:
        raise fail(escape(f"--config {path}: cannot read: {exc.strerror or exc}")) from exc
    except ValidationError as exc:  # one line naming each field and its problem, not pydantic's dump
        raise fail(escape(f"--config {path}: {describe_validation_error(exc)}")) from exc


def _training_inputs(data: list[str] | None, households: int | None, config: Path | None,
                     mapping: Path | None = None, catalog: str | None = None) -> tuple[TrainConfig, Dataset]:
    """The TrainConfig (``--config`` JSON, else the defaults) and the dataset read with its event types, the
    ``--mapping`` and the ``--catalog``; any one bad fails the command with a message."""
    from recsys.domain.schema import DataValidationError
    from training.loaders import load_dataset

    train_config = _train_config(config)
    try:
        dataset = load_dataset(data or [], households=households, known_event_types=set(train_config.event_weights),
                                mapping=_mapping(mapping), catalog=catalog)
    except DataValidationError as exc:
        raise fail(str(exc)) from exc
    return train_config, dataset


def train(
    data: DataOption = None,
    mapping: MappingOption = None,
    catalog: CatalogOption = None,
    assortment: AssortmentOption = None,
    train_until: Annotated[datetime | None, typer.Option(help="drop events after this time (for evaluation)")] = None,
    out: Annotated[Path, typer.Option(help="models directory; the new model becomes out/current")] = Path("models"),
    households: Annotated[int | None, typer.Option(help="sample this many Complete Journey households")] = None,
    config: Annotated[Path | None, typer.Option(help="TrainConfig as JSON (see recsys.domain.config)")] = None,
    feedback: FeedbackOption = None,
    progress: ProgressOption = True,
    engine: EngineOption = Engine.pandas,
    spark_master: SparkMasterOption = None,
    als: AlsOption = None,
    driver_memory: DriverMemoryOption = None,
    promote: Annotated[bool, typer.Option(
        help="make the new model current; --no-promote: register it only (recsys models promote VERSION "
             "later)")] = True,
    as_json: Annotated[bool, typer.Option(
        "--json", help="the summary as one JSON document on stdout (the model's path in it), not the table")] = False,
) -> None:
    """Train a model and write it to OUT/<version>; prints the model's path last (or the --json summary)."""
    from recsys.domain.schema import DataValidationError
    from training.pipeline import train as run_training

    warn_password_in_argv("--feedback", feedback)
    _check_spark_options(engine, spark_master, als, driver_memory)
    if engine is Engine.spark:
        _train_with_spark(SparkInputs(data, mapping, catalog, households, config, feedback, assortment),
                          train_until=train_until,
                          out=out, progress=progress, spark_master=spark_master, als=als or SparkAls.driver,
                          promote=promote, as_json=as_json, driver_memory=driver_memory)
        return
    train_config, dataset = _training_inputs(data, households, config, mapping, catalog)
    stores_carry = _assortment(assortment, mapping)
    try:
        result = run_training(dataset, train_config, out_dir=out, train_until=train_until, show_progress=progress,
                              feedback=_decisions(feedback), make_current=promote, assortment=stores_carry)
    except DataValidationError as exc:
        raise fail(str(exc)) from exc
    summary.show(result, _summary, as_json=as_json, current=promote)


@dataclass(frozen=True)
class SparkInputs:
    """What ``train --engine spark`` reads, as the command line named it."""

    data: list[str] | None
    mapping: Path | None
    catalog: str | None
    households: int | None
    config: Path | None
    feedback: str | None
    assortment: Path | None = None


@dataclass(frozen=True)
class SparkRun:
    """What a command on Spark works with once its inputs are read: the session, the events as Spark reads them,
    the catalog and the loaders' reports (``training.spark.reading.read_sources``), and the other inputs read."""

    spark: Any
    events: Any  # a Spark DataFrame in the canonical events schema
    catalog: pd.DataFrame
    reports: list[ValidationReport]
    config: TrainConfig
    feedback: pd.DataFrame | None
    assortment: pd.DataFrame | None


def _check_spark_options(engine: Engine, spark_master: str | None, als: SparkAls | None,
                         driver_memory: str | None) -> None:
    """The Spark options make sense with ``--engine spark`` only, and a memory size must be one."""
    given = [name for name, value in (("--spark-master", spark_master), ("--als", als),
                                      ("--driver-memory", driver_memory)) if value is not None]
    if engine is not Engine.spark and given:
        raise fail(f"{given[0]} needs --engine spark")
    if driver_memory is not None and not _MEMORY_SIZE.fullmatch(driver_memory):
        raise fail(escape(f"--driver-memory: {driver_memory!r} is not a memory size such as 4g or 512m"))


@contextmanager
def _on_spark(inputs: SparkInputs, spark_master: str | None, driver_memory: str | None, progress: bool
              ) -> Iterator[SparkRun]:
    """The inputs read for a command on Spark: pyspark checked, the config, mapping, feedback and assortment read
    as on one machine, a session (``driver_memory``, else its local-mode default; Spark's stage bars with
    ``progress`` on a terminal only) and the data read through it.
    A failure while the command runs is told by its cause: bad data as the single-machine engine tells it, a Java
    OutOfMemoryError naming ``--driver-memory``, any other Spark error by Spark's first line."""
    from recsys.domain.schema import DataValidationError

    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise fail(escape("--engine spark needs pyspark: pip install 'recsys[spark]' (and Java 17)")) from exc
    from training.progress import stderr_is_terminal
    from training.spark.reading import read_sources
    from training.spark.session import default_driver_memory, describe_failure, spark_session

    train_config = _train_config(inputs.config)
    columns = _mapping(inputs.mapping)
    decisions = _decisions(inputs.feedback)
    stores_carry = _assortment(inputs.assortment, inputs.mapping)
    memory = driver_memory or default_driver_memory(spark_master)
    try:
        spark = spark_session(spark_master, driver_memory=memory,
                              console_progress=progress and stderr_is_terminal())
        events, products, reports = read_sources(spark, inputs.data or [], columns, set(train_config.event_weights),
                                                 inputs.catalog, inputs.households)
        yield SparkRun(spark, events, products, reports, train_config, decisions, stores_carry)
    except DataValidationError as exc:
        raise fail(escape(str(exc))) from exc
    except Exception as exc:
        message = describe_failure(exc, memory)
        if message is None:  # not Spark's: the command's own exit, or an internal error
            raise
        raise fail(escape(message)) from exc


def _train_with_spark(inputs: SparkInputs, *, train_until: datetime | None, out: Path, progress: bool,
                      spark_master: str | None, als: SparkAls, promote: bool = True, as_json: bool = False,
                      driver_memory: str | None = None) -> None:
    """``train --engine spark``: the events read and aggregated by Spark, the rest on this (the driver) machine."""
    from training.spark.trainer import train_spark

    with _on_spark(inputs, spark_master, driver_memory, progress) as run:
        result = train_spark(run.spark, run.events, run.catalog, run.reports, run.config, out_dir=out,
                             train_until=train_until, show_progress=progress, feedback=run.feedback, als=als.value,
                             make_current=promote, assortment=run.assortment)
    summary.show(result, _summary, as_json=as_json, current=promote)


def retrain(
    data: Annotated[list[str] | None, typer.Option(help="as for train (default completejourney)")] = None,
    mapping: MappingOption = None,
    catalog: CatalogOption = None,
    models: Annotated[Path, typer.Option(help="models directory")] = Path("models"),
    config: Annotated[Path | None, typer.Option(help="TrainConfig as JSON (see recsys.domain.config)")] = None,
    max_drop: Annotated[float, typer.Option(help="largest allowed drop of HR@3, NDCG@10 and new-item HR@3")] = 0.01,
    holdout_weeks: Annotated[float, typer.Option(help="the last weeks of data both models are judged on")] = 4.0,
    households: Annotated[int | None, typer.Option(help="sample this many Complete Journey households")] = None,
    feedback: FeedbackOption = None,
    state: Annotated[str | None, typer.Option(
        help="the replicas' shared state URL: when the candidate is promoted, move its model pointer so that every "
             "replica loads it")] = None,
    progress: ProgressOption = True,
    engine: EngineOption = Engine.pandas,
    spark_master: SparkMasterOption = None,
    als: AlsOption = None,
    driver_memory: DriverMemoryOption = None,
) -> None:
    """Nightly: train on the latest data, compare with the current model on the same hold-out, promote only if
    no gated metric drops by more than --max-drop. Exit 0 promoted, 1 refused, 2 bad input, 3 internal error;
    logs to MODELS/retrain.jsonl. With --engine spark the candidate trains on Spark, behind the same gate."""
    from pydantic import ValidationError

    from recsys import ArtifactError
    from recsys.domain.schema import DataValidationError
    from recsys.model.artifact import read_manifest
    from recsys.state.store import check_url
    from training.nightly import GateConfig
    from training.nightly import retrain as run_retrain

    try:
        gate = GateConfig(max_drop=max_drop, holdout_weeks=holdout_weeks)
    except ValidationError as exc:
        raise fail(escape(describe_validation_error(exc, option_name))) from exc
    warn_password_in_argv("--feedback", feedback)
    warn_password_in_argv("--state", state)
    try:
        if state is not None:
            check_url(state)  # before hours of training, not after
    except ValueError as exc:
        raise fail(f"--state: {exc}") from exc
    _check_spark_options(engine, spark_master, als, driver_memory)
    if engine is Engine.spark:
        from training.spark.nightly import retrain_spark

        inputs = SparkInputs(data, mapping, catalog, households, config, feedback)
        with _on_spark(inputs, spark_master, driver_memory, progress) as run:
            try:
                result = retrain_spark(run.events, run.catalog, run.reports, models, run.config, gate,
                                       show_progress=progress, feedback=run.feedback,
                                       als=(als or SparkAls.driver).value)
            except ArtifactError as exc:
                raise fail(escape(str(exc))) from exc
    else:
        train_config, dataset = _training_inputs(data, households, config, mapping, catalog)
        try:
            result = run_retrain(dataset, models, train_config, gate, show_progress=progress,
                                 feedback=_decisions(feedback))
        except (DataValidationError, ArtifactError) as exc:
            raise fail(str(exc)) from exc
    summary.show_candidate(read_manifest(models / result.candidate, verify=False))
    if result.metrics:
        table = Table(title=f"quality gate: last {holdout_weeks:g} weeks from {str(result.split)[:10]}, "
                            f"{result.sample_customers:,} customers, max drop {max_drop}")
        # one row per gated metric (each intent's): a column per model stays readable in a narrow terminal
        versions = list(result.metrics)
        table.add_column("metric", style="bold")
        for version in versions:
            table.add_column(f"{'candidate' if version == result.candidate else 'current'} {version}",
                             justify="right")
        table.add_row("queries", *(f"{result.queries[v]['all']:,}" for v in versions))
        for name in result.metrics[versions[0]]:
            table.add_row(name, *(f"{result.metrics[v].get(name, float('nan')):.4f}" for v in versions))
        print_table(table)  # the versions whole, even in a log
    console.print(("[green]" if result.promoted else "[red]") + result.message + "[/]", soft_wrap=True,
                  highlight=False)
    typer.echo(str(models / result.candidate))
    if not result.promoted:
        raise typer.Exit(ExitStatus.refused)
    point_replicas(state, result.candidate)


def add_items(
    catalog: Annotated[str, typer.Option(help="catalog file (.csv/.tsv/.parquet, or a file: URL) with the new items")],
    mapping: Annotated[Path | None, typer.Option(help="TOML whose catalog section names the file's columns")] = None,
    model: Annotated[Path, typer.Option(help="model to extend")] = Path("models/current"),
    out: Annotated[Path, typer.Option(help="models directory; the new version becomes out/current")] = Path(
        "models"),
) -> None:
    """Add catalog items without retraining: a new model version in seconds, each new item with a
    metadata-based embedding (its brand's and group's items). Then POST /v1/admin/reload."""
    from recsys import ArtifactError
    from recsys.domain.schema import DataValidationError
    from training.catalog import add_items as run_add_items
    from training.loaders import read_catalog

    try:
        columns = _mapping(mapping)
        path, added = run_add_items(model.resolve(), read_catalog(catalog, columns), out)
    except (ArtifactError, DataValidationError) as exc:
        raise fail(str(exc)) from exc
    console.print(f"{added:,} new items" + ("" if added else ": nothing to do, the model is unchanged"))
    typer.echo(str(path))
