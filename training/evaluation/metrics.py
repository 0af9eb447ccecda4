"""The evaluation's metrics: HR@k, NDCG@10 and MRR@10 per query, their means, and the bootstrap interval of a
difference between two methods over whole customers."""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

#: every method answers with this many items
CUTOFF: Final[int] = 10
HIT_KS: Final[tuple[int, ...]] = (1, 3, 5, 10)


def per_query_metrics(ranked: list[np.ndarray], relevant: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Each metric's value per query (HR@k: 0 or 1)."""
    first = np.full(len(ranked), CUTOFF, dtype=np.int64)  # rank of the first relevant item; CUTOFF: none
    ndcg = np.zeros(len(ranked))
    discounts = 1.0 / np.log2(np.arange(2, CUTOFF + 2))
    for i, (top, rel) in enumerate(zip(ranked, relevant, strict=True)):
        is_rel = np.isin(top[:CUTOFF], rel)
        if is_rel.any():
            first[i] = int(np.argmax(is_rel))
            ndcg[i] = discounts[:len(is_rel)][is_rel].sum() / discounts[:min(len(rel), CUTOFF)].sum()
    mrr = np.where(first < CUTOFF, 1.0 / (first + 1), 0.0)
    return {**{f"HR@{k}": (first < k).astype(np.float64) for k in HIT_KS}, "NDCG@10": ndcg, "MRR@10": mrr}


def means(per_query: dict[str, dict[str, dict[str, np.ndarray]]], coverage: dict[str, float]
          ) -> dict[str, dict[str, dict[str, float]]]:
    """The mean of each metric (method -> subset -> metric), with each method's catalog coverage on all queries."""
    metrics = {name: {subset: {metric: float(values.mean()) if len(values) else 0.0
                               for metric, values in by_metric.items()}
                      for subset, by_metric in by_subset.items()}
               for name, by_subset in per_query.items()}
    for name, value in coverage.items():
        metrics[name]["all"]["coverage"] = value
    return metrics


def margin_interval(ours: np.ndarray, baseline: np.ndarray, clusters: np.ndarray, seed: int = 0,
                    resamples: int = 1000) -> tuple[float, float, float]:
    """Mean of ``ours - baseline`` over queries and its 95% bootstrap interval. Whole customers (``clusters``)
    are resampled: one customer's queries are not independent of each other."""
    difference = ours - baseline
    codes, _ = pd.factorize(clusters)
    sums, counts = np.bincount(codes, weights=difference), np.bincount(codes).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(difference.mean()), float(low), float(high)
