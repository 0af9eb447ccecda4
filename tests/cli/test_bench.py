"""The latency benchmarks run (quick mode) and report well-formed numbers; timings are never asserted."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks import latency
from recsys.cli import app


def test_engine_benchmark_compares_against_baselines(model_dir: Path) -> None:
    result = latency.bench_engine(model_dir, n_queries=100)
    assert result["queries"] == 100
    for name in ("ours", "ours_familiar", "ours_discover", "ours_retrieval_only", "ours_with_100_rules",
                 "ours_every_unreported_item_offered", "ours_after_a_stock_update", "brute_force_numpy",
                 "brute_force_numpy_every_unreported_item_offered", "implicit_similar_items_then_filter"):
        stats = result[name]
        assert 0 < stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"] <= stats["max_ms"]
    assert set(result["p99_speedup_vs_brute_force_by_intent"]) == {"balanced", "familiar", "discover"}
    # our retrieval is exact within the group, so it finds the exact filtered answer
    assert result["recall_at_10_vs_exact_filtered"] == pytest.approx(1.0)


def test_scaling_search_is_exact() -> None:
    (row,) = latency.bench_scaling(sizes=(5_000,), n_queries=50)
    assert row["items"] == 5_000 and row["recall_at_10"] == pytest.approx(1.0)


def test_cli_quick_mode_writes_json(model_dir: Path, tmp_path: Path) -> None:
    cores = os.sched_getaffinity(0)
    result = CliRunner().invoke(app, ["bench", "--model", str(model_dir), "--quick", "--json",
                                      str(tmp_path / "latency.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "latency.json").read_text())
    assert report["quick"] is True and report["engine"]["queries"] == 300
    (run,) = report["http"]["runs"]
    assert run["errors"] == 0 and run["requests"] == 100
    assert 0 < run["engine_in_server_p50_ms"] <= run["server_p50_ms"]
    # the server and the load generator had a core each, and this process has all its cores back
    assert report["http"]["server_and_load_generator_on_separate_cores"] == (len(cores) >= 2)
    assert os.sched_getaffinity(0) == cores
    assert set(report["training"]["stage_seconds"]) >= {"embeddings", "ranker"}


def test_engine_runs_report_the_median_ratio(model_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "--model", str(model_dir), "--quick", "--no-http", "--engine-runs", "3",
                                      "--json", str(tmp_path / "latency.json")])
    assert result.exit_code == 0, result.output
    runs = json.loads((tmp_path / "latency.json").read_text())["engine_runs"]
    assert len(runs["p99_ratio_vs_brute_force"]) == 3
    assert set(runs["median_p99_ratio_vs_brute_force"]) == {"no rules", "100 rules", "every unreported item offered",
                                                             "a stock update before each query"}
    for name, median in runs["median_p99_ratio_vs_brute_force"].items():
        ratios = sorted(run[name] for run in runs["p99_ratio_vs_brute_force"])
        assert median == ratios[1] and ratios[0] > 0
    assert "median p99 ratio to brute force over 3 runs" in result.output


def test_per_query_times_compare_two_runs_query_by_query(model_dir: Path, tmp_path: Path) -> None:
    """benchmarks/per_query.py: a time per query of the mix, and the comparison of two such files."""
    import subprocess
    import sys

    import numpy as np

    from benchmarks import per_query

    best = per_query.best_times(model_dir, passes=2, n_queries=60)
    assert len(best) == 60 and all(0 < t < 1_000 for t in best)
    every_item = per_query.best_times(model_dir, passes=1, n_queries=60, every_item=True)
    assert len(every_item) == 60 and all(0 < t < 1_000 for t in every_item)
    before = np.asarray(best)
    compared = per_query.compare(before, before * np.where(np.arange(60) < 15, 0.5, 2.0))
    assert compared["median_ratio"] == 2.0 and compared["share_slower"] == 0.75
    assert compared["p10_ratio"] == 0.5 and compared["p99_after_ms"] > compared["p99_before_ms"] * 0.5
    files = []
    for name, times in (("before", before), ("after", before * 1.25)):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps({"best_ms": times.tolist()}))
    shown = subprocess.run([sys.executable, per_query.__file__, "--compare", *map(str, files)],
                           capture_output=True, text=True, check=True).stdout
    assert json.loads(shown[shown.index("{"):])["median_ratio"] == pytest.approx(1.25)
    files[1].write_text(json.dumps({"best_ms": best[:10]}))
    refused = subprocess.run([sys.executable, per_query.__file__, "--compare", *map(str, files)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "not the same run of queries" in refused.stderr
