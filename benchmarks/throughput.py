"""The most personal ``POST /v1/substitutes`` requests a second ``recsys serve`` answers on this machine, measured from
outside with `wrk <https://github.com/wg/wrk>`_ (Debian's ``wrk``; ``make wrk`` installs it), with and without access
control in the same run.

Each configuration starts a fresh server on a free loopback port and sends a closed-loop load: ``--connections``
keep-alive connections (16 by default), each sending its next request as soon as the previous answer arrives, for
``--seconds``, after a warm-up. The bodies are a realistic mix (``benchmarks.latency.query_mix``: popularity-weighted
items, 70% known customers, a fifth with a filter), k=10, each at a store drawn from the model's stores, cycled by a
Lua script so that no two consecutive requests are alike. wrk runs one thread, so on a 2-core machine it holds one core
and one worker the other.

Configurations (``--configs``, in this order):

- ``open-1``: one worker, ``RECSYS_AUTH=open``, no key (access control off: the baseline);
- ``keys-1``: one worker, every request with an API key of the read scope (``RECSYS_AUTH=keys``, the default), the
  rate limit counted (set out of reach), the concurrency limit, CORS for one origin, the access log on (to
  ``/dev/null``) and signed answers: everything switched on;
- ``keys-2``: the same with ``--workers 2``.

Run: ``python -m benchmarks.throughput --model models/current --out DIR``; ``throughput.json`` and ``throughput.md``
(the table) go to ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency import K, access_controlled, query_mix
from recsys import SubstituteEngine
from serving.process import children, proc_stat, serving

CONFIGS = ("open-1", "keys-1", "keys-2")
_LUA = """
local bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "/v1/substitutes", nil, bodies[i])
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def bodies(model: Path, n: int, seed: int) -> list[str]:
    """``n`` request bodies: the latency benchmark's query mix, each at one of the model's stores, k=10."""
    engine = SubstituteEngine.load(model)
    stores = [str(s) for s in engine.model.stores]
    rng = np.random.default_rng(seed)
    lines = []
    for query in query_mix(engine, n, seed):
        body: dict[str, Any] = {"item_id": query.item_id, "customer_id": query.customer_id, "k": K,
                                "store_id": stores[int(rng.integers(len(stores)))]}
        if query.filters is not None:
            body["filters"] = query.filters.model_dump(exclude_none=True)
        lines.append(json.dumps(body, separators=(",", ":")))
    return lines


def _milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, latency percentiles (ms) and error counts from ``wrk --latency``'s report."""
    result: dict[str, float] = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}  # type: ignore[union-attr]
    for percentile in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{percentile}%\s+(\S+)", output, re.MULTILINE)
        if match:
            result[f"p{percentile}_ms"] = _milliseconds(match.group(1))
    result["requests"] = float(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["non_2xx"] = float(non_2xx.group(1)) if non_2xx else 0.0
    result["socket_errors"] = float(sum(map(int, socket_errors.groups()))) if socket_errors else 0.0
    return result


def run_wrk(base: str, script: Path, headers: dict[str, str], connections: int, seconds: float
            ) -> dict[str, float]:
    header_args = [arg for name, value in {"content-type": "application/json", **headers}.items()
                   for arg in ("-H", f"{name}: {value}")]
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script),
               *header_args, base]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    return parse_wrk(output)


def measure(model: Path, config: str, script: Path, *, connections: int, seconds: float,
            warmup_s: float) -> dict[str, float]:
    auth, workers = config.split("-")
    with access_controlled(auth) as (env, headers):
        env |= {"RECSYS_CORS_ORIGINS": "https://shop.example"} if auth == "keys" else {}
        args = ("--workers", workers) if workers != "1" else ()
        if auth == "keys":
            args = (*args, "--access-log")  # stderr goes to /dev/null: the lines are made and written
        with serving(model, env=env, args=args, timeout_s=300) as (base, process):
            run_wrk(base, script, headers, connections, warmup_s)
            cpu_before = server_cpu_seconds(process.pid)
            result = run_wrk(base, script, headers, connections, seconds)
            # the server's own CPU time per answer: what the throughput is made of, and far steadier than requests/s
            # on a machine shared with others (their load takes wall time, not this process's CPU time)
            cpu = server_cpu_seconds(process.pid) - cpu_before
            result["server_cpu_us_per_request"] = cpu / result["requests"] * 1e6
            return result


def server_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of the server ``pid`` and its live workers so far (Linux ``/proc``)."""
    ticks = 0
    for process in (pid, *children(pid)):
        fields = proc_stat(process)
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def table(results: dict[str, dict[str, float]]) -> str:
    lines = ["| configuration | requests/s | ratio to open-1 | p50 ms | p99 ms | server CPU µs/request | non-2xx | "
             "socket errors |", "|---|---|---|---|---|---|---|---|"]
    baseline = results.get("open-1", {}).get("requests_per_s")
    for name, row in results.items():
        ratio = f"{row['requests_per_s'] / baseline:.2f}" if baseline else ""
        lines.append(f"| {name} | {row['requests_per_s']:,.0f} | {ratio} | {row.get('p50_ms', 0):.2f} | "
                     f"{row.get('p99_ms', 0):.2f} | {row.get('server_cpu_us_per_request', 0):.0f} | "
                     f"{row['non_2xx']:.0f} | {row['socket_errors']:.0f} |")
    if "keys-1" in results and "keys-2" in results:
        scaling = results["keys-2"]["requests_per_s"] / results["keys-1"]["requests_per_s"]
        lines.append(f"\ntwo workers / one: {scaling:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/current"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed: `make wrk` installs Debian's")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configurations {unknown}: expected some of {', '.join(CONFIGS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="recsys-wrk-") as directory:
        lines = Path(directory) / "bodies.jsonl"
        lines.write_text("\n".join(bodies(args.model, args.queries, args.seed)) + "\n")
        script = Path(directory) / "bodies.lua"
        script.write_text(_LUA % lines)
        results = {config: measure(args.model, config, script, connections=args.connections,
                                   seconds=args.seconds, warmup_s=args.warmup) for config in configs}
    report = {"model": str(args.model.resolve()), "connections": args.connections, "seconds": args.seconds,
              "results": results}
    (args.out / "throughput.json").write_text(json.dumps(report, indent=2))
    (args.out / "throughput.md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
