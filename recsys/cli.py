"""The ``recsys`` command line: ``train`` and ``serve``."""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Substitute-product recommendations: train, serve, evaluate, bench.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


def _summary(result: Any) -> Table:
    from recsys.artifact import directory_size

    manifest = result.manifest
    table = Table(title="training summary", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for source in manifest["sources"]:
        skipped = ", ".join(f"{k}: {v:,}" for k, v in source["skipped"].items()) or "none"
        table.add_row(f"rows: {source['source']}", f"{source['rows_read']:,} read, {source['rows_used']:,} used; "
                                                   f"skipped {skipped}")
    span = manifest["data_span"]
    table.add_row("data span", f"{span['start']} .. {span['end']}")
    for key, value in manifest["counts"].items():
        table.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, dict) else f"{value:,}")
    rate = manifest["size_parse_rate"]
    table.add_row("package sizes parsed", "no sizes in data" if rate is None else f"{rate:.2%}")
    for stage, seconds in result.stage_seconds.items():
        table.add_row(f"time: {stage}", f"{seconds:.2f} s")
    table.add_row("model size", f"{directory_size(result.model_dir) / 1e6:.1f} MB")
    table.add_row("model version", manifest["version"])
    return table


FeedbackOption = Annotated[Path | None, typer.Option(
    help="substitution feedback: the server's state file (RECSYS_STATE_PATH), the strongest signal")]


def _decisions(path: Path | None) -> Any:
    import sqlite3

    from recsys.feedback import read_decisions

    if path is None:
        return None
    try:
        decisions = read_decisions(path)
    except (OSError, ValueError, sqlite3.Error) as exc:
        raise _fail(f"--feedback {path}: {exc}") from exc
    console.print(f"feedback: {len(decisions):,} decisions from {path}")
    return decisions


def _training_inputs(data: list[str] | None, households: int | None, config: Path | None) -> tuple[Any, Any]:
    """The TrainConfig (``--config`` JSON, else the defaults) and the dataset read with its event types;
    either one bad fails the command with a message."""
    from pydantic import ValidationError

    from recsys.config import TrainConfig
    from recsys.schema import DataValidationError
    from training.loaders import load_dataset

    try:
        train_config = TrainConfig.model_validate_json(config.read_text()) if config else TrainConfig()
    except (OSError, ValidationError) as exc:
        raise _fail(f"bad --config: {exc}") from exc
    try:
        dataset = load_dataset(data or [], households=households, known_event_types=set(train_config.event_weights))
    except DataValidationError as exc:
        raise _fail(str(exc)) from exc
    return train_config, dataset


@app.command()
def train(
    data: Annotated[list[str] | None, typer.Option(
        help="'completejourney' (default) or an event-log path (.csv/.tsv/.parquet); repeat to combine")] = None,
    train_until: Annotated[datetime | None, typer.Option(help="drop events after this time (for evaluation)")] = None,
    out: Annotated[Path, typer.Option(help="models directory; the new model becomes out/current")] = Path("models"),
    households: Annotated[int | None, typer.Option(help="sample this many Complete Journey households")] = None,
    config: Annotated[Path | None, typer.Option(help="TrainConfig as JSON (see recsys.config)")] = None,
    feedback: FeedbackOption = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train a model and write it to OUT/<version>; prints the model's path last."""
    from recsys.schema import DataValidationError
    from training.pipeline import train as run_training

    train_config, dataset = _training_inputs(data, households, config)
    try:
        result = run_training(dataset, train_config, out_dir=out, train_until=train_until, show_progress=progress,
                              feedback=_decisions(feedback))
    except DataValidationError as exc:
        raise _fail(str(exc)) from exc
    console.print(_summary(result))
    typer.echo(str(result.model_dir))


@app.command()
def retrain(
    data: Annotated[list[str] | None, typer.Option(help="as for train (default completejourney)")] = None,
    models: Annotated[Path, typer.Option(help="models directory")] = Path("models"),
    config: Annotated[Path | None, typer.Option(help="TrainConfig as JSON (see recsys.config)")] = None,
    max_drop: Annotated[float, typer.Option(help="largest allowed drop of HR@3, NDCG@10 and new-item HR@3")] = 0.01,
    holdout_weeks: Annotated[float, typer.Option(help="the last weeks of data both models are judged on")] = 4.0,
    households: Annotated[int | None, typer.Option(help="sample this many Complete Journey households")] = None,
    feedback: FeedbackOption = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Nightly: train on the latest data, compare with the current model on the same hold-out, promote only if
    no gated metric drops by more than --max-drop. Exit 0 promoted, 1 refused, 2 error; logs to
    MODELS/retrain.jsonl."""
    from pydantic import ValidationError

    from recsys import ArtifactError
    from recsys.schema import DataValidationError
    from training.nightly import GateConfig
    from training.nightly import retrain as run_retrain

    try:
        gate = GateConfig(max_drop=max_drop, holdout_weeks=holdout_weeks)
    except ValidationError as exc:
        raise _fail(f"bad gate option: {exc}") from exc
    train_config, dataset = _training_inputs(data, households, config)
    try:
        result = run_retrain(dataset, models, train_config, gate, show_progress=progress,
                             feedback=_decisions(feedback))
    except (DataValidationError, ArtifactError) as exc:
        raise _fail(str(exc)) from exc
    if result.metrics:
        table = Table(title=f"quality gate: last {holdout_weeks:g} weeks from {str(result.split)[:10]}, "
                            f"max drop {max_drop}")
        table.add_column("model", style="bold")
        for name in ("queries", *next(iter(result.metrics.values()))):
            table.add_column(name, justify="right")
        for version, values in result.metrics.items():
            role = "candidate" if version == result.candidate else "current"
            table.add_row(f"{role} {version}", f"{result.queries[version]['all']:,}",
                          *(f"{v:.4f}" for v in values.values()))
        console.print(table)
    console.print(("[green]" if result.promoted else "[red]") + result.message + "[/]", soft_wrap=True,
                  highlight=False)
    typer.echo(str(models / result.candidate))
    if not result.promoted:
        raise typer.Exit(1)


@app.command("add-items")
def add_items(
    catalog: Annotated[Path, typer.Option(help="catalog file (.csv/.tsv/.parquet) with the new items")],
    model: Annotated[Path, typer.Option(help="model to extend")] = Path("models/current"),
    out: Annotated[Path, typer.Option(help="models directory; the new version becomes out/current")] = Path(
        "models"),
) -> None:
    """Add catalog items without retraining: a new model version in seconds, each new item with a
    metadata-based embedding (its brand's and group's items). Then POST /v1/admin/reload."""
    from recsys import ArtifactError
    from recsys.schema import DataValidationError
    from training.catalog import add_items as run_add_items
    from training.loaders import read_catalog

    try:
        path, added = run_add_items(model.resolve(), read_catalog(catalog), out)
    except (ArtifactError, DataValidationError) as exc:
        raise _fail(str(exc)) from exc
    console.print(f"{added:,} new items" + ("" if added else ": nothing to do, the model is unchanged"))
    typer.echo(str(path))


def _evaluation_table(result: Any, subset: str) -> Table:
    from training.evaluation import HIT_KS

    columns = [f"HR@{k}" for k in HIT_KS] + ["NDCG@10", "MRR@10"] + (["coverage"] if subset == "all" else [])
    table = Table(title=f"{subset.replace('_', ' ')}: {result.queries[subset]:,} queries "
                        f"(split {result.split[:10]})")
    table.add_column("method", style="bold", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right")
    for name, values in result.metrics.items():
        table.add_row(name, *(f"{values[subset][c]:.3f}" for c in columns),
                      style="green" if name == "ours" else None)
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
                      style="green" if name == "ours" else "dim" if name in result.bounds else None)
    return table


@app.command()
def evaluate(
    model: Annotated[Path | None, typer.Option(help="a model trained before the split; default: train one")] = None,
    data: Annotated[list[str] | None, typer.Option(help="as for train (default completejourney)")] = None,
    split: Annotated[datetime | None, typer.Option(help="test period start; default 40 weeks after the first event")
                     ] = None,
    max_queries: Annotated[int | None, typer.Option(help="sample this many queries (seeded)")] = None,
    households: Annotated[int | None, typer.Option(help="sample this many Complete Journey households")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    json_path: Annotated[Path, typer.Option("--json", help="metrics as JSON")] = Path(
        "benchmarks/results/evaluation.json"),
    plot_path: Annotated[Path, typer.Option("--plot", help="HR@k plot (PNG)")] = Path(
        "benchmarks/results/evaluation.png"),
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Offline hit-rate benchmark: our substitutes against strong baselines on the same switch queries."""
    import tempfile

    import pandas as pd

    from recsys import ArtifactError, SubstituteEngine
    from recsys.schema import DataValidationError
    from training import evaluation
    from training.loaders import load_dataset
    from training.pipeline import train as run_training

    try:
        dataset = load_dataset(data or [], households=households)
        cut = pd.Timestamp(split) if split else evaluation.default_split(dataset.events)
        with tempfile.TemporaryDirectory(prefix="recsys-eval-") as tmp:
            if model is None:
                console.print(f"training a model on the data before {cut}")
                trained = run_training(dataset, out_dir=Path(tmp), train_until=cut.to_pydatetime(),
                                       show_progress=progress, make_current=False)
                model = trained.model_dir
            engine = SubstituteEngine.load(model)
            result = evaluation.evaluate(engine, dataset, cut, max_queries=max_queries, seed=seed,
                                         show_progress=progress)
    except (DataValidationError, ArtifactError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    for subset in evaluation.SUBSETS:
        console.print(_evaluation_table(result, subset))
    console.print(_headroom_table(result))
    for subset in evaluation.SUBSETS:
        for metric in evaluation.MARGIN_METRICS:
            name, best = result.best_baseline(subset, metric)
            ours = result.metrics["ours"][subset][metric]
            verdict = "[green]beats[/]" if ours > best else "[red]does not beat[/]"
            margin = result.margins.get(subset, {}).get(metric)
            interval = ""
            if margin is not None:
                low, high = margin["ci95"]
                clear = "clearly" if low > 0 else "clearly not" if high < 0 else "within noise"
                interval = f" (difference {ours - best:+.4f}, 95% interval {low:+.4f} to {high:+.4f}: {clear})"
            console.print(f"{subset} {metric}: ours {ours:.4f} {verdict} the best baseline {name} {best:.4f}"
                          f"{interval}", soft_wrap=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    evaluation.write_json(result, json_path)
    evaluation.plot(result, plot_path)
    typer.echo(f"{json_path}\n{plot_path}")


def _latency_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("method", style="bold", no_wrap=True)
    for column in ("p50 ms", "p95 ms", "p99 ms", "max ms", "qps"):
        table.add_column(column, justify="right")
    for name, values in rows.items():
        table.add_row(name, *(f"{values[k]:.3f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
                      f"{values['qps']:,.0f}", style="green" if name == "ours" else None)
    return table


@app.command()
def bench(
    model: Annotated[Path, typer.Option(help="model to benchmark")] = Path("models/current"),
    quick: Annotated[bool, typer.Option(help="small sizes (CI): proves the benchmarks run, not the targets")] = False,
    json_path: Annotated[Path, typer.Option("--json")] = Path("benchmarks/results/latency.json"),
    http: Annotated[bool, typer.Option(help="include the HTTP load benchmark")] = True,
) -> None:
    """Latency benchmarks of the query path, each against a baseline measured in the same run."""
    import platform

    from benchmarks import latency
    from recsys.artifact import ArtifactError, read_manifest

    try:
        manifest = read_manifest(model, verify=False)
    except ArtifactError as exc:
        raise _fail(str(exc)) from exc
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                                           "python": platform.python_version()}, "quick": quick}
    console.print("engine, in process ...")
    engine = latency.bench_engine(model, n_queries=300 if quick else 3000)
    results["engine"] = engine
    console.print(_latency_table(
        f"engine on {engine['items']:,} items, {engine['queries']:,} queries, 10% out of stock "
        f"(recall@10 vs exact filtered: {engine['recall_at_10_vs_exact_filtered']:.3f})",
        {"ours": engine["ours"], "ours, retrieval only": engine["ours_retrieval_only"],
         "brute-force numpy + filter": engine["brute_force_numpy"],
         "implicit similar_items + filter": engine["implicit_similar_items_then_filter"]}))
    console.print(f"p99 speed-up: full answer {engine['p99_speedup_vs_brute_force']:.1f}x vs brute force, "
                  f"{engine['p99_speedup_vs_implicit']:.1f}x vs implicit; retrieval only (the baselines' work) "
                  f"{engine['retrieval_p99_speedup_vs_brute_force']:.1f}x vs brute force")
    console.print("scaling, synthetic catalogs ...")
    scaling = latency.bench_scaling(sizes=(10_000,) if quick else (10_000, 100_000, 1_000_000),
                                    n_queries=100 if quick else 300)
    results["scaling"] = scaling
    table = Table(title="scaling (d=64, log-normal groups, 10% out of stock)")
    for column in ("items", "groups", "ours p99 ms", "brute p99 ms", "speed-up", "recall@10", "build s", "vectors MB"):
        table.add_column(column, justify="right")
    for row in scaling:
        table.add_row(f"{row['items']:,}", f"{row['groups']:,}", f"{row['ours']['p99_ms']:.3f}",
                      f"{row['brute_force_numpy']['p99_ms']:.3f}", f"{row['p99_speedup']:.0f}x",
                      f"{row['recall_at_10']:.3f}", f"{row['index_build_s']:.2f}", f"{row['vectors_mb']:.0f}")
    console.print(table)
    if http:
        console.print("http, recsys serve on loopback ...")
        results["http"] = latency.bench_http(model, rates=(50.0,) if quick else (100.0, 500.0),
                                             seconds=2.0 if quick else 5.0)
        table = Table(title="HTTP POST /v1/substitutes, one worker, loopback")
        for column in ("target rps", "achieved rps", "errors", "p50 ms", "p99 ms", "max ms", "server p50",
                       "server p99", "engine in server p50"):
            table.add_column(column, justify="right")
        for run in results["http"]["runs"]:
            table.add_row(f"{run['target_rps']:.0f}", f"{run['achieved_rps']:.0f}", f"{run['errors']}",
                          f"{run['p50_ms']:.2f}", f"{run['p99_ms']:.2f}", f"{run['max_ms']:.2f}",
                          f"{run['server_p50_ms']:.2f}", f"{run['server_p99_ms']:.2f}",
                          f"{run['engine_in_server_p50_ms']:.2f}")
        console.print(table)
        last, http_results = results["http"]["runs"][-1], results["http"]
        http_results["p50_ratio_vs_engine"] = last["p50_ms"] / engine["ours"]["p50_ms"]
        http_results["server_p50_ratio_vs_engine"] = last["server_p50_ms"] / engine["ours"]["p50_ms"]
        # the same requests' engine time: spaced out as requests arrive, the engine meets colder caches than in
        # the back-to-back in-process benchmark
        http_results["server_p50_ratio_vs_engine_in_server"] = last["server_p50_ms"] / last["engine_in_server_p50_ms"]
        console.print(f"HTTP p50 / in-process engine p50: {http_results['p50_ratio_vs_engine']:.1f}x at the client, "
                      f"{http_results['server_p50_ratio_vs_engine']:.1f}x inside the server; server p50 / the "
                      f"engine's p50 on the same requests: {http_results['server_p50_ratio_vs_engine_in_server']:.1f}x")
    results["training"] = {"model": manifest["version"], "stage_seconds": manifest.get("stage_seconds"),
                           "stage_peak_rss_mb": manifest.get("stage_peak_rss_mb")}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2))
    typer.echo(str(json_path))


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="parquet file to write")] = Path("exports/substitutes.parquet"),
    model: Annotated[Path, typer.Option(help="model directory or the current symlink")] = Path("models/current"),
    k: Annotated[int, typer.Option(min=1, max=100, help="substitutes per item")] = 10,
    store: Annotated[list[str] | None, typer.Option(
        help="apply this store's live availability (repeat for several); default: online")] = None,
    state: Annotated[Path | None, typer.Option(
        help="the server's inventory database (RECSYS_STATE_PATH) for the stores' availability")] = None,
    items_with_events_only: Annotated[bool, typer.Option(help="skip items nobody bought or viewed")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """The top-k substitutes of every item (non-personal), one row per (store, item, rank), to parquet."""
    from recsys import ArtifactError, Inventory, SubstituteEngine
    from recsys.export import export_substitutes
    from recsys.inventory import ONLINE, SqliteStockStore

    if state is not None and not state.is_file():
        raise _fail(f"--state {state}: no such inventory database")
    try:
        inventory = Inventory(SqliteStockStore(state)) if state is not None else Inventory()
        engine = SubstituteEngine.load(model, inventory)
    except ArtifactError as exc:
        raise _fail(str(exc)) from exc
    stats = export_substitutes(engine, out, k=k, stores=store or [ONLINE],
                               items_with_events_only=items_with_events_only, show_progress=progress)
    console.print(f"{stats.items:,} items ({stats.items_without_substitutes:,} without substitutes), "
                  f"{stats.rows:,} rows in {stats.seconds:.1f} s: {stats.items_per_second:,.0f} items/s")
    typer.echo(str(stats.path))


def _show_example(base_url: str, model_path: Path) -> None:
    """After start-up: print (and run) an example request for a real, popular item."""
    import httpx
    import pandas as pd

    from recsys.model import ITEMS_FILE
    from serving.process import wait_ready

    items = pd.read_parquet(Path(model_path).resolve() / ITEMS_FILE, columns=["item_id", "n_customers"])
    item_id = str(items.sort_values("n_customers", ascending=False)["item_id"].iloc[0])
    body = {"item_id": item_id, "k": 3}
    if not wait_ready(base_url):
        return
    command = (f"curl -s -X POST {base_url}/v1/substitutes -H 'content-type: application/json' "
               f"-d '{json.dumps(body)}'")
    answer = httpx.post(f"{base_url}/v1/substitutes", json=body, timeout=5).json()
    console.print(f"\n[bold]example request[/] (API docs: {base_url}/docs):")
    console.print(command, soft_wrap=True, markup=False, highlight=False)
    console.print_json(data=answer)


@app.command()
def serve(
    model: Annotated[Path, typer.Option(help="model directory or the current symlink")] = Path("models/current"),
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    example: Annotated[bool, typer.Option(help="print and run an example request once ready")] = False,
    log_level: Annotated[str, typer.Option()] = "info",
    access_log: Annotated[bool, typer.Option(help="one JSON line per request on stderr")] = True,
) -> None:
    """Serve the HTTP API (one worker, uvloop/httptools when installed). Settings: RECSYS_* variables."""
    import uvicorn

    from recsys.artifact import ArtifactError, read_manifest
    from serving.app import create_app
    from serving.settings import Settings

    try:
        read_manifest(model, verify=False)
    except ArtifactError as exc:
        raise _fail(str(exc)) from exc
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))  # the access log lines are JSON already
    access = logging.getLogger("recsys.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO if access_log else logging.WARNING)
    access.propagate = False
    application = create_app(Settings(model_path=model))
    if example:
        threading.Thread(target=_show_example, args=(f"http://{host}:{port}", model), daemon=True).start()
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False)


models_app = typer.Typer(help="The models directory: list, promote, rollback, prune.", no_args_is_help=True)
app.add_typer(models_app, name="models")
ModelsDir = Annotated[Path, typer.Option("--models", help="models directory")]


@models_app.command("list")
def models_list(models: ModelsDir = Path("models")) -> None:
    """Versions with creation time, data span, size, ranker, counts and held-out metrics; * marks the current."""
    from recsys.registry import HEADLINE_METRICS, list_models

    table = Table(title=f"models in {models}")
    headline = tuple(HEADLINE_METRICS)
    for column in ("", "version", "created", "data span", "size MB", "ranker", "events", "items", *headline):
        table.add_column(column)
    for entry in list_models(models) if models.is_dir() else []:
        span = f"{entry.data_span.get('start', '')[:10]} .. {entry.data_span.get('end', '')[:10]}"
        table.add_row("*" if entry.current else "", entry.version, entry.created_at, span,
                      f"{entry.size_bytes / 1e6:.1f}", entry.ranker, f"{entry.counts.get('events', 0):,}",
                      f"{entry.counts.get('items', 0):,}",
                      *(f"{entry.metrics[m]:.3f}" if m in entry.metrics else "" for m in headline))
    Console(width=max(Console().width, 150)).print(table)  # one line per model, even in a narrow pipe


@models_app.command("promote")
def models_promote(version: str, models: ModelsDir = Path("models")) -> None:
    """Verify VERSION and make it current (then POST /v1/admin/reload to serve it)."""
    from recsys.artifact import ArtifactError
    from recsys.registry import promote

    try:
        promote(models, version)
    except ArtifactError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"current -> {version}")


@models_app.command("rollback")
def models_rollback(models: ModelsDir = Path("models")) -> None:
    """Make the previously current model current again."""
    from recsys.artifact import ArtifactError
    from recsys.registry import rollback

    try:
        version = rollback(models)
    except ArtifactError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"current -> {version}")


@models_app.command("prune")
def models_prune(keep: Annotated[int, typer.Option(min=1, help="newest models to keep")],
                 models: ModelsDir = Path("models")) -> None:
    """Delete old models, keeping the newest KEEP; the current and previous ones are never deleted."""
    from recsys.registry import prune

    for version in prune(models, keep):
        typer.echo(f"deleted {version}")


def main() -> None:
    app(prog_name="recsys")


if __name__ == "__main__":
    sys.exit(main())
