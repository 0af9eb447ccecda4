"""The throughput benchmark (wrk against real servers) runs each configuration and reports well-formed numbers;
throughput itself is never asserted. Needs Debian's wrk (`make wrk`), so it runs with the slow tier."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import throughput

pytestmark = pytest.mark.slow


def test_every_configuration_answers_without_errors(synthetic_model_dir: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.throughput", "--model", str(synthetic_model_dir),
                             "--out", str(tmp_path), "--seconds", "2", "--warmup", "1", "--queries", "300"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "throughput.json").read_text())
    assert set(report["results"]) == set(throughput.CONFIGS)
    for name, row in report["results"].items():
        assert row["requests"] > 0 and row["non_2xx"] == 0 and row["socket_errors"] == 0, name
        assert 0 < row["p50_ms"] <= row["p99_ms"]
        assert row["server_cpu_us_per_request"] > 0, name  # the server (and its workers) worked for the answers
    assert "| keys-1 |" in (tmp_path / "throughput.md").read_text()


def test_a_refused_request_is_counted(synthetic_model_dir: Path, tmp_path: Path) -> None:
    """A load the server refuses (no key) shows as non-2xx answers, so a broken configuration cannot pass as fast."""
    script = tmp_path / "bodies.lua"
    lines = tmp_path / "bodies.jsonl"
    lines.write_text("\n".join(throughput.bodies(synthetic_model_dir, 20, 0)) + "\n")
    script.write_text(throughput._LUA % lines)
    with throughput.access_controlled("keys") as (env, _), \
            throughput.serving(synthetic_model_dir, env=env) as (base, _process):
        row = throughput.run_wrk(base, script, {}, connections=2, seconds=1)
    assert row["requests"] > 0 and row["non_2xx"] == row["requests"]
