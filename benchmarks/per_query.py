"""Each query's own engine time, the best of several passes, to compare two versions of the code query by query.

A p99 from one pass moves by 10% or more between runs on a shared machine (the neighbours' load, interrupts), far
more than most code changes move it. The best of a few passes over the same queries leaves each query's own cost,
and two versions' files compare query by query:

    PYTHONPATH=OLD_CHECKOUT python benchmarks/per_query.py MODEL old.json   # the script from this checkout,
    PYTHONPATH=NEW_CHECKOUT python benchmarks/per_query.py MODEL new.json   # the engine from each one
    python benchmarks/per_query.py --compare old.json new.json

``--every-item`` answers as the service did before availability needed evidence (every item nobody reported out
is offered), to compare the two kinds of answer of one checkout the same way.

It runs as a file, not a module, so that it can time an older checkout's engine, and it uses only what every
version since the store-truth changes has (``benchmarks.latency.query_mix`` and ``K``): the latency benchmark's
3,000 queries at a store where a seeded 10% of the catalog is out of stock, as ``recsys bench`` times them.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import numpy as np


def best_times(model: Path, passes: int, n_queries: int, seed: int = 0, every_item: bool = False) -> list[float]:
    """Per query of the mix, its fastest of ``passes`` answers, in ms; ``every_item``: answered as before
    availability needed evidence (every item nobody reported out offered; a checkout with store truth only)."""
    import faiss

    from benchmarks.latency import K, query_mix
    from recsys import StockUpdate, SubstituteEngine

    faiss.omp_set_num_threads(1)
    engine = SubstituteEngine.load(model)
    gc.collect()
    gc.freeze()  # as the server does after loading a model
    ids = engine.model.items["item_id"].to_numpy()
    store = "bench-store"
    out = np.random.default_rng(seed).choice(len(ids), size=len(ids) // 10, replace=False)
    engine.inventory.apply([StockUpdate(item_id=str(ids[i]), store_id=store, in_stock=False) for i in out])
    if every_item:
        from recsys import AvailabilityPolicy

        engine.use_policy(AvailabilityPolicy(allow_unknown_items=True))
    queries = query_mix(engine, n_queries, seed)
    for query in queries[:100]:  # warm-up: the kernels' first calls, the caches
        engine.substitutes(query.item_id, query.customer_id, store, K, filters=query.filters)
    best = [float("inf")] * len(queries)
    for _ in range(passes):
        for i, query in enumerate(queries):
            start = time.perf_counter()
            engine.substitutes(query.item_id, query.customer_id, store, K, filters=query.filters)
            best[i] = min(best[i], (time.perf_counter() - start) * 1e3)
    return best


def summary(times: np.ndarray) -> str:
    return ", ".join(f"p{p} {np.percentile(times, p):.4f} ms" for p in (50, 90, 99))


def compare(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    """How ``after``'s per-query times compare with ``before``'s, for the same queries."""
    ratio = after / before
    slowest = np.argsort(-before)[: max(1, len(before) // 100)]
    return {"median_ratio": float(np.median(ratio)), "p10_ratio": float(np.percentile(ratio, 10)),
            "p90_ratio": float(np.percentile(ratio, 90)), "share_slower": float(np.mean(ratio > 1)),
            "median_ratio_on_slowest_1pct": float(np.median(ratio[slowest])),
            "p99_before_ms": float(np.percentile(before, 99)), "p99_after_ms": float(np.percentile(after, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs=2, type=Path, help="MODEL OUT.json, or with --compare BEFORE.json AFTER.json")
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--every-item", action="store_true",
                        help="answer as before availability needed evidence: every item nobody reported out offered")
    args = parser.parse_args()
    if args.compare:
        before, after = (np.asarray(json.loads(path.read_text())["best_ms"]) for path in args.paths)
        if len(before) != len(after):
            parser.error(f"the files hold {len(before)} and {len(after)} queries: not the same run of queries")
        print(f"before: {summary(before)}\nafter:  {summary(after)}")
        print(json.dumps(compare(before, after), indent=2))
        return
    model, out = args.paths
    best = best_times(model, args.passes, args.queries, every_item=args.every_item)
    out.write_text(json.dumps({"model": str(model), "passes": args.passes, "every_item": args.every_item,
                               "best_ms": best}))
    print(f"{len(best)} queries, best of {args.passes} passes: {summary(np.asarray(best))}")


if __name__ == "__main__":
    main()
