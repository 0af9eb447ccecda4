"""``recsys bench``: the latency benchmarks of a source checkout."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import statistics
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.table import Table

from recsys.cli.common import console, fail, print_table

# the benchmarks are not installed with the package: they ship with the source checkout (next to recsys/), which an
# editable install runs from
CHECKOUT_BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _latency() -> ModuleType:
    """``benchmarks.latency`` from the source checkout; the command fails (2) without one."""
    package = CHECKOUT_BENCHMARKS
    if not (package / "latency.py").is_file():
        raise fail("recsys bench runs the benchmarks, which ship with the source checkout, not the installed "
                    "package: run it from a clone installed with pip install -e '.\\[bench]'")
    loaded = sys.modules.get("benchmarks")
    if loaded is None:
        spec = importlib.util.spec_from_file_location("benchmarks", package / "__init__.py",
                                                      submodule_search_locations=[str(package)])
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules["benchmarks"]
            raise
    elif Path(getattr(loaded, "__file__", None) or "").resolve().parent != package:
        raise fail(f"another 'benchmarks' package is imported ({loaded!r}), not the checkout's {package}")
    return importlib.import_module("benchmarks.latency")


def _latency_table(title: str, rows: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("method", style="bold", no_wrap=True)
    for column in ("p50 ms", "p95 ms", "p99 ms", "max ms", "qps"):
        table.add_column(column, justify="right")
    for name, values in rows.items():
        table.add_row(name, *(f"{values[k]:.3f}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
                      f"{values['qps']:,.0f}", style="green" if name == "ours" else None)
    return table


def bench(
    model: Annotated[Path, typer.Option(help="model to benchmark")] = Path("models/current"),
    quick: Annotated[bool, typer.Option(help="small sizes (CI): proves the benchmarks run, not the targets")] = False,
    json_path: Annotated[Path, typer.Option("--json")] = Path("benchmarks/results/latency.json"),
    http: Annotated[bool, typer.Option(help="include the HTTP load benchmark")] = True,
    engine_runs: Annotated[int, typer.Option(
        min=1, max=50, help="run the engine benchmark this many times (the same queries) and report the median p99 "
                            "ratios: one run's p99 moves by several percent on a shared machine")] = 1,
) -> None:
    """Latency benchmarks of the query path, each against a baseline measured in the same run."""
    import platform

    from recsys.model.artifact import ArtifactError, read_manifest

    latency = _latency()
    if http and importlib.util.find_spec("aiohttp") is None:
        raise fail("the HTTP load benchmark needs aiohttp, in the bench extra: pip install -e '.\\[bench]' "
                    "(or run with --no-http)")
    try:
        manifest = read_manifest(model, verify=False)
    except ArtifactError as exc:
        raise fail(str(exc)) from exc
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                                           "python": platform.python_version()}, "quick": quick}
    console.print("engine, in process ...")
    n_queries = 300 if quick else 3000
    engine = latency.bench_engine(model, n_queries=n_queries)
    results["engine"] = engine
    if engine_runs > 1:
        ratios = [engine["p99_ratio_vs_brute_force"]]
        for run in range(2, engine_runs + 1):
            console.print(f"engine, in process, run {run} of {engine_runs} ...")
            ratios.append(latency.bench_engine(model, n_queries=n_queries)["p99_ratio_vs_brute_force"])
        results["engine_runs"] = {"p99_ratio_vs_brute_force": ratios, "median_p99_ratio_vs_brute_force": {
            name: statistics.median(run[name] for run in ratios) for name in ratios[0]}}
    print_table(_latency_table(
        f"engine on {engine['items']:,} items, {engine['queries']:,} queries, 10% out of stock "
        f"(recall@10 vs exact filtered: {engine['recall_at_10_vs_exact_filtered']:.3f})",
        {"ours": engine["ours"], "ours, familiar": engine["ours_familiar"], "ours, discover": engine["ours_discover"],
         "ours, 100 merchandising rules": engine["ours_with_100_rules"],
         "ours, every unreported item offered": engine["ours_every_unreported_item_offered"],
         "ours, a stock update before each query": engine["ours_after_a_stock_update"],
         "ours, retrieval only": engine["ours_retrieval_only"],
         "brute-force numpy + filter": engine["brute_force_numpy"],
         "brute-force, every unreported item offered": engine["brute_force_numpy_every_unreported_item_offered"],
         "implicit similar_items + filter": engine["implicit_similar_items_then_filter"]}))
    console.print(f"p99 speed-up: full answer {engine['p99_speedup_vs_brute_force']:.1f}x vs brute force, "
                  f"{engine['p99_speedup_vs_implicit']:.1f}x vs implicit; retrieval only (the baselines' work) "
                  f"{engine['retrieval_p99_speedup_vs_brute_force']:.1f}x vs brute force")
    console.print("p99 ratio to brute force: " + ", ".join(
        f"{name} {ratio:.3f}" for name, ratio in engine["p99_ratio_vs_brute_force"].items()))
    if engine_runs > 1:
        console.print(f"median p99 ratio to brute force over {engine_runs} runs: " + ", ".join(
            f"{name} {ratio:.3f} (runs: {', '.join(f'{run[name]:.3f}' for run in ratios)})"
            for name, ratio in results["engine_runs"]["median_p99_ratio_vs_brute_force"].items()))
    console.print("p99 speed-up vs brute force by intent: " + ", ".join(
        f"{intent} {ratio:.1f}x" for intent, ratio in engine["p99_speedup_vs_brute_force_by_intent"].items()))
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
    print_table(table)
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
        print_table(table)
        last, http_results = results["http"]["runs"][-1], results["http"]
        http_results["p50_ratio_vs_engine"] = last["p50_ms"] / engine["ours"]["p50_ms"]
        http_results["server_p50_ratio_vs_engine"] = last["server_p50_ms"] / engine["ours"]["p50_ms"]
        # the same requests' engine time: spaced out as requests arrive, the engine meets colder caches than in
        # the back-to-back in-process benchmark
        http_results["server_p50_ratio_vs_engine_in_server"] = last["server_p50_ms"] / last["engine_in_server_p50_ms"]
        console.print(f"HTTP p50 / in-process engine p50: {http_results['p50_ratio_vs_engine']:.1f}x at the client, "
                      f"{http_results['server_p50_ratio_vs_engine']:.1f}x inside the server; server p50 / the "
                      f"engine's p50 on the same requests: {http_results['server_p50_ratio_vs_engine_in_server']:.1f}x")
    results["training"] = {"model": manifest.version, "stage_seconds": manifest.stage_seconds,
                           "stage_peak_rss_mb": manifest.stage_peak_rss_mb}
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2))
    typer.echo(str(json_path))
