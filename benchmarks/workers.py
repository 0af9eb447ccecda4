"""``recsys serve --workers N`` on this machine: throughput and p99 at 1 and 2 workers, and the memory each worker
costs, the headline being what the extra worker adds.

For each worker count the server starts on a free loopback port (the inventory in a fresh SQLite state, which
``--workers`` needs), answers a warm-up, then two loads of the same realistic query mix (``benchmarks.latency``):

- closed loop: ``--connections`` keep-alive connections, each sending its next request when the previous answer
  arrives, for ``--seconds``: the most the server answers (throughput), and the latency at that load;
- open loop: ``--rate`` requests/s on a schedule for ``--seconds``, latency from each request's scheduled time
  (no coordinated omission), as in ``recsys bench``.

Memory is read from ``/proc`` (Linux) for every process of the server (the parent and its workers) after start-up
and again after the loads (a forked worker's copy-on-write pages become private as it writes them): RSS, PSS
(each page divided by the processes that map it, so the PSS of all processes is the memory they use together),
private and shared. The CPU seconds each worker spent during the closed loop show how the kernel spread the
connections. The load generator runs in this process, on the same cores as the server.

Every request carries an API key with the read scope, made in the state before the server starts (the default
deployment: the measured path includes access control); ``--auth open`` runs the server with ``RECSYS_AUTH=open``
and sends no key, to measure the same without it (``benchmarks.latency.access_controlled``). The per-caller rate
limit is raised out of reach either way, so the loads are measured, not refused.

``--source DIR`` runs the ``recsys serve`` of another source checkout (``git archive REV | tar -x -C DIR``), with
this checkout's load and measurements: how the "before" rows of docs/deployment.md were measured (a checkout
from before API keys takes no key: measure it with ``--auth open``). Run:
``python -m benchmarks.workers --model models/current --out DIR``; the JSON and the table go to ``DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.latency import AUTH_MODES, K, access_controlled, load_at_rate, query_mix, summarise
from recsys import SubstituteEngine
from serving.process import children, memory, proc_stat, serving

MB = 2**20


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children and so on."""
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def tree_memory(pid: int) -> dict[str, Any]:
    """Memory of ``pid`` and its descendants (MB): per process, and the PSS of all of them together."""
    processes = []
    for each in [pid, *descendants(pid)]:
        try:
            used = memory(each)
        except (OSError, KeyError):
            continue  # ended meanwhile
        processes.append({"pid": each, "parent": each == pid, **{k: v / MB for k, v in used.items()}})
    return {"processes": processes, "total_pss_mb": sum(p["pss"] for p in processes)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _closed(base: str, bodies: list[bytes], connections: int, seconds: float, once: bool = False,
                  headers: dict[str, str] | None = None) -> dict[str, Any]:
    """``connections`` keep-alive connections, each sending its next request when the previous answer arrives,
    for ``seconds`` (``once``: until every body has been sent once), with ``headers`` (the API key)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(base_url=base, connector=connector, timeout=timeout,
                                     headers={"content-type": "application/json", **(headers or {})}) as session:
        began = time.perf_counter()
        stop = began + seconds

        async def client(offset: int) -> None:
            nonlocal errors
            i = offset
            while (i < len(bodies)) if once else (time.perf_counter() < stop):
                sent = time.perf_counter()
                try:
                    async with session.post("/v1/substitutes", data=bodies[i % len(bodies)]) as response:
                        await response.read()
                        errors += response.status != 200
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                latencies.append(time.perf_counter() - sent)
                i += connections

        await asyncio.gather(*(client(c) for c in range(connections)))
        elapsed = time.perf_counter() - began
    stats = summarise(latencies)
    return {"connections": connections, "requests": len(latencies), "errors": errors,
            "achieved_rps": len(latencies) / elapsed, **{k: v for k, v in stats.items() if k != "qps"}}


def measure(model: Path, workers: int, bodies: list[bytes], *, connections: int, rate: float, seconds: float,
            source: Path | None, sweep: list[bytes], auth: str = "keys") -> dict[str, Any]:
    """One worker count: the loads, and the memory after start-up, after the loads and, when ``sweep`` holds
    requests, after those (every item asked for once: the most that serving writes to, and so copies of, the
    pages a worker shares). ``auth``: with an API key on every request (``keys``) or without access control
    (``open``)."""
    with access_controlled(auth) as (env, headers), serving(
            model, env=env, timeout_s=600, args=("--workers", str(workers)), cwd=source) as (base, process):
        asyncio.run(load_at_rate(base, bodies, 50.0, 2.0, headers))  # warm-up: every worker's first requests
        started = tree_memory(process.pid)
        # the processes that answer: the server itself with one worker, its children with more
        serving_pids = [process.pid] if workers == 1 else descendants(process.pid)
        before = {pid: cpu_seconds(pid) for pid in serving_pids}
        closed = asyncio.run(_closed(base, bodies, connections, seconds, headers=headers))
        closed["cpu_s_per_process"] = [round(cpu_seconds(pid) - before[pid], 2) for pid in serving_pids]
        opened = asyncio.run(load_at_rate(base, bodies, rate, seconds, headers))
        loaded = tree_memory(process.pid)
        swept = None
        if sweep:
            asyncio.run(_closed(base, sweep, connections, 0.0, once=True, headers=headers))
            swept = tree_memory(process.pid)
    return {"workers": workers, "auth": auth, "closed_loop": closed, "open_loop": opened, "memory_started": started,
            "memory_loaded": loaded, "memory_swept": swept}


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| workers | closed loop: req/s | p50 ms | p99 ms | open loop: req/s | p50 ms | p99 ms | "
            "total PSS MB: started / loaded / swept | per process, loaded: RSS / PSS / private MB |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for row in rows:
        closed, opened, used = row["closed_loop"], row["open_loop"], row["memory_loaded"]
        totals = " / ".join(f"{row[f'memory_{stage}']['total_pss_mb']:.0f}" if row[f"memory_{stage}"] else "-"
                            for stage in ("started", "loaded", "swept"))
        per = "; ".join(f"{'parent' if p['parent'] else 'child'} {p['rss']:.0f} / {p['pss']:.0f} / "
                        f"{p['private']:.0f}" for p in used["processes"])
        lines.append(f"| {row['workers']} | {closed['achieved_rps']:.0f} | {closed['p50_ms']:.1f} | "
                     f"{closed['p99_ms']:.1f} | {opened['achieved_rps']:.0f} | {opened['p50_ms']:.1f} | "
                     f"{opened['p99_ms']:.1f} | {totals} | {per} |")
    return "\n".join(lines)


def run(model: Path, counts: list[int], *, connections: int, rate: float, seconds: float, source: Path | None,
        out: Path, sweep: bool = True, auth: str = "keys") -> dict[str, Any]:
    engine = SubstituteEngine.load(model)
    bodies = [json.dumps({"item_id": q.item_id, "customer_id": q.customer_id, "k": K}).encode()
              for q in query_mix(engine, 500, 0)]
    every_item = [json.dumps({"item_id": str(item), "k": K}).encode() for item in engine.item_ids] if sweep else []
    version = engine.version
    del engine
    rows = [measure(model, n, bodies, connections=connections, rate=rate, seconds=seconds, source=source,
                    sweep=every_item, auth=auth) for n in counts]
    result: dict[str, Any] = {"model_version": version, "source": str(source) if source else "this checkout",
                              "auth": auth, "connections": connections, "rate": rate, "seconds": seconds, "runs": rows}
    for stage in ("started", "loaded", "swept"):
        by_count = {row["workers"]: row[f"memory_{stage}"]["total_pss_mb"] for row in rows if row[f"memory_{stage}"]}
        if 1 in by_count and 2 in by_count:
            result[f"extra_worker_pss_mb_{stage}"] = by_count[2] - by_count[1]
            result[f"extra_worker_share_of_one_{stage}"] = (by_count[2] - by_count[1]) / by_count[1]
    out.mkdir(parents=True, exist_ok=True)
    (out / "workers.json").write_text(json.dumps(result, indent=2))
    text = table(rows)
    for stage, when in (("started", "after start-up"), ("loaded", "after the loads"),
                        ("swept", "after every item was asked for")):
        if f"extra_worker_pss_mb_{stage}" in result:
            text += (f"\n{when}: the second worker adds {result[f'extra_worker_pss_mb_{stage}']:.0f} MB of PSS "
                     f"({result[f'extra_worker_share_of_one_{stage}']:.0%} of the one-worker server's)")
    (out / "workers.md").write_text(text + "\n")
    print(text)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/current"))
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
    parser.add_argument("--connections", type=int, default=16, help="closed loop: concurrent connections")
    parser.add_argument("--rate", type=float, default=200.0, help="open loop: requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="each load's length")
    parser.add_argument("--source", type=Path, help="run the recsys serve of this source checkout")
    parser.add_argument("--auth", choices=AUTH_MODES, default="keys",
                        help="keys: an API key with the read scope on every request (as deployed); open: "
                             "RECSYS_AUTH=open and no key (without access control)")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false",
                        help="skip asking for every item once (the memory ceiling; about 2 minutes a worker count)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/workers"))
    args = parser.parse_args()
    try:
        counts = [int(n) for n in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: comma-separated integers expected, got {args.workers!r}")
    if not (args.model / "manifest.json").is_file():
        parser.error(f"--model: {args.model} is not a model directory")
    source = args.source.resolve() if args.source else None
    run(args.model.resolve(), counts, connections=args.connections, rate=args.rate, seconds=args.seconds,
        source=source, out=args.out, sweep=args.sweep, auth=args.auth)


if __name__ == "__main__":
    main()
