"""``recsys evaluate``: the offline hit-rate benchmark."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from recsys.cli.common import ProgressOption, console, fail, print_json, print_table
from recsys.domain.types import Intent
from recsys.model.registry import INTENT_METHODS


def _evaluation_table(result: Any, subset: str) -> Table:
    from training.evaluation import HIT_KS

    columns = [f"HR@{k}" for k in HIT_KS] + ["NDCG@10", "MRR@10"] + (["coverage"] if subset == "all" else [])
    period = f"split {result.split[:10]}" + (f" to {result.end[:10]}" if result.end else "")
    table = Table(title=f"{subset.replace('_', ' ')}: {result.queries[subset]:,} queries ({period})")
    table.add_column("method", style="bold", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in result.metrics.items():
        table.add_row(name, *(f"{values[subset][c]:.3f}" for c in columns),
                      style="green" if name in INTENT_METHODS.values() else None)
    return table


def _verdict(subject: str, margin: dict[str, Any], ours: float) -> str:
    """One line: ``subject`` against a baseline, with the interval of the difference."""
    low, high = margin["ci95"]
    best = ours - margin["difference"]
    beats = "[green]beats[/]" if margin["difference"] > 0 else "[red]does not beat[/]"
    clear = "clearly" if low > 0 else "clearly not" if high < 0 else "within noise"
    return (f"{subject}: {ours:.4f} {beats} {margin['baseline']} {best:.4f} (difference {margin['difference']:+.4f}, "
            f"95% interval {low:+.4f} to {high:+.4f}: {clear})")


def _availability_table(result: Any) -> Table:
    """Ours on all queries, offering every item and only items a store is known to have."""
    metrics = list(next(iter(result.availability.values())))
    table = Table(title=f"availability: ours (balanced), all {result.queries['all']:,} queries")
    for column in ("items offered", *metrics):
        table.add_column(column, justify="left" if column == "items offered" else "right")
    for mode, values in result.availability.items():
        table.add_row(mode, *(f"{values[m]:.3f}" for m in metrics))
    return table


def _headroom_table(result: Any) -> Table:
    from training.evaluation import MARGIN_METRICS, QUERY_TYPES

    counts = ", ".join(f"{result.query_types[kind]:,} {kind}" for kind in QUERY_TYPES)
    table = Table(title=f"by kind of query ({counts}); * reads the test period: headroom, not a method")
    table.add_column("method", style="bold", no_wrap=True)
    for kind in QUERY_TYPES:
        for metric in MARGIN_METRICS:
            table.add_column(f"{kind} {metric}", justify="right")
    table.add_column("all HR@3", justify="right")
    table.add_column("new HR@3", justify="right")
    rows = {**{name: (name, values) for name, values in result.metrics.items()},
            **{name: (f"{name} *", values) for name, values in result.bounds.items()}}
    for name, (label, values) in rows.items():
        by_type = result.by_query_type[name]
        table.add_row(label, *(f"{by_type[kind][metric]:.3f}" for kind in QUERY_TYPES for metric in MARGIN_METRICS),
                      f"{values['all']['HR@3']:.3f}", f"{values['new_to_customer']['HR@3']:.3f}",
                      style="green" if name in INTENT_METHODS.values() else "dim" if name in result.bounds else None)
    return table


def evaluate(
    model: Annotated[Path | None, typer.Option(help="a model trained before the split; default: train one")] = None,
    data: Annotated[list[str] | None, typer.Option(help="as for train (default completejourney)")] = None,
    mapping: Annotated[Path | None, typer.Option(help="as for train: TOML naming your columns")] = None,
    catalog: Annotated[str | None, typer.Option(help="as for train: a product file joined to the events")] = None,
    split: Annotated[datetime | None, typer.Option(help="test period start; default 40 weeks after the first event")
                     ] = None,
    test_weeks: Annotated[float | None, typer.Option(min=0.1, help="test period length; default: to the data's end")
                          ] = None,
    max_queries: Annotated[int | None, typer.Option(help="sample this many queries (seeded)")] = None,
    households: Annotated[int | None, typer.Option(help="sample this many Complete Journey households")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    json_path: Annotated[Path, typer.Option("--json", help="metrics as JSON to this file; '-': to stdout, alone "
                                                       "there (the tables then go to stderr)")] = Path(
        "benchmarks/results/evaluation.json"),
    plot_path: Annotated[Path, typer.Option("--plot", help="HR@k plot (PNG)")] = Path(
        "benchmarks/results/evaluation.png"),
    progress: ProgressOption = True,
    availability: Annotated[bool, typer.Option(
        "--availability", help="also measure ours offering only items a store is known to have: online (the "
        "chain's evidence) and at each switch basket's store, against every item (docs/evaluation.md)")] = False,
) -> None:
    """Offline hit-rate benchmark: our substitutes against strong baselines on the same switch queries."""
    import pandas as pd

    from recsys import ArtifactError, SubstituteEngine
    from recsys.domain.schema import DataValidationError
    from training import evaluation
    from training.loaders import load_dataset
    from training.mapping import DataMapping
    from training.pipeline import fit_model

    try:
        columns = DataMapping.from_toml(mapping) if mapping else None
        dataset = load_dataset(data or [], households=households, mapping=columns, catalog=catalog)
        cut = pd.Timestamp(split) if split else evaluation.default_split(dataset.events)
        if model is None:
            console.print(f"training a model on the data before {cut}")
            engine = fit_model(dataset, train_until=cut.to_pydatetime(), show_progress=progress).engine()
        else:
            engine = SubstituteEngine.load(model)
        end = cut + pd.Timedelta(weeks=test_weeks) if test_weeks else None
        result = evaluation.evaluate(engine, dataset, cut, max_queries=max_queries, seed=seed,
                                     show_progress=progress, end=end, availability=availability)
    except (DataValidationError, ArtifactError, ValueError) as exc:
        raise fail(str(exc)) from exc
    json_to_stdout = str(json_path) == "-"
    for subset in evaluation.SUBSETS:  # a row per method
        print_table(_evaluation_table(result, subset), stderr=json_to_stdout, min_width=150)
    print_table(_headroom_table(result), stderr=json_to_stdout, min_width=150)
    if result.availability:
        print_table(_availability_table(result), stderr=json_to_stdout)
    for subset, margins in result.margins.items():
        for metric, margin in margins.items():
            console.print(_verdict(f"balanced, {subset} {metric}", margin, result.metrics["ours"][subset][metric]),
                          soft_wrap=True)
    for intent, margins in result.intent_margins.items():
        specialist = evaluation.INTENT_SPECIALISTS[Intent(intent)]
        method = INTENT_METHODS[Intent(intent)]
        for metric, margin in margins.items():
            console.print(_verdict(f"{intent}, {specialist.subset} {metric}", margin,
                                   result.metrics[method][specialist.subset][metric]), soft_wrap=True)
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    evaluation.plot(result, plot_path)
    if json_to_stdout:
        console.print(f"plot: {plot_path}", highlight=False, soft_wrap=True)
        print_json(result.to_json())
        return
    json_path.parent.mkdir(parents=True, exist_ok=True)
    evaluation.write_json(result, json_path)
    typer.echo(f"{json_path}\n{plot_path}")
