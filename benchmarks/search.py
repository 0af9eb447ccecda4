"""The catalog search (``GET /v1/items``, the review page's search box) on a 1M-item synthetic catalog: the index
(:class:`recsys.query.search.CatalogSearch`) against the scan of every item's text that it replaced
(:class:`recsys.query.search.CatalogScan`), in the same run, on the same queries; nothing here is asserted in tests.

The catalog is ``benchmarks.training_scale``'s ``items-1m`` one (product types, categories and brands such as
``type 123``, ``cat 4`` and ``brand 42``), its popularity counted from its purchases. The queries are what a person
types: a value of a popular item's product type, category or brand cut after a random number of characters (so
one in several is a letter or a word that matches most of the catalog), in a random case; 10% item ids, 5% text
that matches nothing; 80% first pages, the rest pages 2 to 6 (20 items a page, as the review page asks). The item
record is the item id for both, so the times are the search's own. Each method answers blocks of queries in turn,
as in ``recsys bench``; every answer of the index is checked against the scan's.

Run: ``python -m benchmarks.search --out DIR`` (about 2 minutes; ``--items 100000`` for a quicker run); the JSON and
the table go to ``DIR``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.latency import summarise
from benchmarks.training_scale import synthetic_catalog
from recsys.query.search import CatalogScan, CatalogSearch

#: items a page, as the review page asks
PAGE = 20
#: queries each method answers in its turn
BLOCK = 50


def catalog(n_items: int, seed: int = 0) -> pd.DataFrame:
    """The synthetic catalog's item id, product type, category and brand, with ``n_customers`` counted from its
    purchases (a Zipf law within groups: a few popular items, a long tail without any)."""
    dataset = synthetic_catalog(n_items=n_items, n_customers=50_000, n_events=2 * n_items, seed=seed)
    customers = dataset.events.groupby("item_id", observed=True)["customer_id"].nunique()
    items = dataset.catalog[["item_id", "product_type", "category", "brand"]].copy()
    items["n_customers"] = items["item_id"].map(customers).fillna(0).astype(np.int64)
    return items


def queries(items: pd.DataFrame, n: int, seed: int) -> list[tuple[str, int]]:
    """(query, offset) pairs: see the module's docstring."""
    rng = np.random.default_rng(seed)
    weights = items["n_customers"].to_numpy(np.float64) + 1.0
    picks = rng.choice(len(items), size=n, p=weights / weights.sum())
    fields = ("product_type", "category", "brand")
    out = []
    for pick in picks.tolist():
        draw = rng.random()
        if draw < 0.10:
            text = str(items["item_id"].iat[pick])
        elif draw < 0.15:
            text = f"no such thing {pick}"
        else:
            value = str(items[fields[int(rng.integers(3))]].iat[pick])
            text = value[:int(rng.integers(1, len(value) + 1))]
            text = text.upper() if rng.random() < 0.3 else text
        offset = 0 if rng.random() < 0.8 else PAGE * int(rng.integers(1, 6))
        if text.strip():
            out.append((text, offset))
    return out


def _held_mb(build: Callable[[], object]) -> float:
    """The memory what ``build`` makes holds once built (NumPy's arrays included), by a second, traced build."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        built = build()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del built
    return held / 2**20


def _kind(text: str, total: int, n_items: int, ids: set[str]) -> str:
    if text.strip() in ids:
        return "item_id"
    if total == 0:
        return "no_match"
    return "text_over_half" if total > n_items / 2 else "text_under_half"


def run(n_items: int, n_queries: int, seed: int, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    items = catalog(n_items, seed)
    print(f"catalog: {len(items):,} items in {time.perf_counter() - started:.0f} s", flush=True)
    ids = items["item_id"].astype(str).tolist()
    index_of = {item_id: i for i, item_id in enumerate(ids)}
    item: Callable[[int], Any] = ids.__getitem__
    gc.collect()
    built: dict[str, float] = {}
    held: dict[str, float] = {}
    searches: dict[str, CatalogSearch | CatalogScan] = {}
    for name, kind in (("index", CatalogSearch), ("scan", CatalogScan)):
        held[name] = _held_mb(lambda k=kind: k(items, index_of, item))
        start = time.perf_counter()
        searches[name] = kind(items, index_of, item)
        built[name] = time.perf_counter() - start
    gc.collect()
    gc.freeze()  # as the server does after loading a model
    mix = queries(items, n_queries, seed)
    for text, offset in mix[:20]:  # warm-up
        for search in searches.values():
            search.search(text, offset, PAGE)
    times: dict[str, list[float]] = {name: [] for name in searches}
    answers: dict[str, list[Any]] = {name: [] for name in searches}
    for block in range(0, len(mix), BLOCK):
        for name, search in searches.items():
            for text, offset in mix[block:block + BLOCK]:
                start = time.perf_counter()
                answer = search.search(text, offset, PAGE)
                times[name].append(time.perf_counter() - start)
                answers[name].append(answer)
    identical = answers["index"] == answers["scan"]
    totals = np.array([a.total for a in answers["scan"]])
    id_set = set(ids)
    kinds = [_kind(text, answer.total, len(items), id_set) for (text, _), answer in zip(mix, answers["scan"],
                                                                                        strict=True)]
    by_kind = {kind: {"queries": kinds.count(kind), **{
        name: summarise([t for t, k in zip(times[name], kinds, strict=True) if k == kind]) for name in searches}}
        for kind in sorted(set(kinds))}
    result: dict[str, Any] = {
        "items": len(items), "queries": len(mix), "page": PAGE, "identical_answers": identical,
        "matches_p50": float(np.percentile(totals, 50)), "matches_p90": float(np.percentile(totals, 90)),
        "share_matching_over_half_the_catalog": float(np.mean(totals > len(items) / 2)),
        "distinct_values": {f: int(items[f].nunique()) for f in ("product_type", "category", "brand")},
        "index": {**summarise(times["index"]), "build_s": built["index"], "held_mb": held["index"]},
        "scan": {**summarise(times["scan"]), "build_s": built["scan"], "held_mb": held["scan"]},
        "by_kind": by_kind,
    }
    result["p99_speedup"] = result["scan"]["p99_ms"] / result["index"]["p99_ms"]
    result["p50_speedup"] = result["scan"]["p50_ms"] / result["index"]["p50_ms"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "search.json").write_text(json.dumps(result, indent=2))
    text = table(result)
    (out / "search.md").write_text(text + "\n")
    print(text)
    if not identical:
        raise SystemExit("the index and the scan answered differently")
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['items']:,} items, {result['queries']:,} queries, answers identical: "
             f"{result['identical_answers']}",
             "",
             "| method | p50 ms | p95 ms | p99 ms | max ms | qps | build s | memory MB |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ("index", "scan"):
        row = result[name]
        lines.append(f"| {name} | {row['p50_ms']:.3f} | {row['p95_ms']:.3f} | {row['p99_ms']:.3f} | "
                     f"{row['max_ms']:.2f} | {row['qps']:,.0f} | {row['build_s']:.1f} | {row['held_mb']:.0f} |")
    lines.append(f"\np99 {result['p99_speedup']:.0f}x lower, p50 {result['p50_speedup']:.0f}x lower\n")
    lines += ["| queries | share | index p50 ms | index p99 ms | scan p50 ms | scan p99 ms |",
              "|---|---|---|---|---|---|"]
    for kind, row in result["by_kind"].items():
        lines.append(f"| {kind} | {row['queries'] / result['queries']:.0%} | {row['index']['p50_ms']:.3f} | "
                     f"{row['index']['p99_ms']:.3f} | {row['scan']['p50_ms']:.1f} | {row['scan']['p99_ms']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search"))
    args = parser.parse_args()
    run(args.items, args.queries, args.seed, args.out)


if __name__ == "__main__":
    main()
