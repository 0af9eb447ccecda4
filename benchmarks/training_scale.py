"""The training cost curve: how time per stage, the trainer's peak memory, the model's size on disk and the
server's memory grow with the data.

Two kinds of growth:

- ``cj-xN``: The Complete Journey with every household copied N times under new customer and basket ids, so
  customers and events grow N-fold while the catalog stays (a chain with more households).
- ``items-1m``: a synthetic catalog of 1M items in substitution groups of log-normal size, with purchases spread
  over it by a Zipf law (a marketplace with a long tail: items grow).

Each point trains in a fresh process (peak RSS is per process), then ``recsys serve`` loads the model and its
resident memory is read. Run: ``python -m benchmarks.training_scale --points cj-x1,cj-x2 --out DIR``; the JSON,
the table and the plot go to ``DIR``. Nothing here is asserted in tests except the data builders' shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.domain.schema import Dataset

#: the stages the trainer reports (training.progress.STAGES), drawn in this order
STAGE_ORDER = ("validate", "catalog", "interactions", "embeddings", "neighbours", "feedback", "index", "ranker",
               "report", "write")


def replicate(dataset: Dataset, copies: int) -> Dataset:
    """Every household ``copies`` times: copy c > 0 gets ids ``<id>~c`` (customers and baskets); items, stores,
    times and prices stay, so each copy shops exactly like its original.

    The id columns come out categorical (an integer code per row, each id string stored once), as a reader of
    dictionary-encoded parquet gives them, so the input frame costs about 45 bytes an event instead of ~140."""
    if copies < 1:
        raise ValueError("copies must be at least 1")
    events = dataset.events
    columns: dict[str, object] = {}
    for name in events.columns:
        column = events[name]
        if name in ("customer_id", "session_id"):
            codes, uniques = pd.factorize(column)
            n = len(uniques)
            labels = pd.Index([f"{u}~{c}" if c else str(u) for c in range(copies) for u in uniques])
            columns[name] = pd.Categorical.from_codes(
                np.concatenate([codes + c * n for c in range(copies)]), categories=labels)
        elif name in ("item_id", "store_id", "event_type"):
            single = column.astype("category")
            columns[name] = pd.Categorical.from_codes(np.tile(single.cat.codes.to_numpy(), copies),
                                                      categories=single.cat.categories)
        else:
            columns[name] = np.tile(column.to_numpy(), copies)
    return Dataset(events=pd.DataFrame(columns), catalog=dataset.catalog, reports=dataset.reports)


def synthetic_catalog(n_items: int = 1_000_000, n_customers: int = 50_000, n_events: int = 6_000_000,
                      seed: int = 0) -> Dataset:
    """``n_items`` items in groups of log-normal size (median ~40), brands and sizes per item, and
    ``n_events`` purchases: customers shop in a few groups each, items drawn by a Zipf law within a group."""
    rng = np.random.default_rng(seed)
    sizes = np.maximum(1, rng.lognormal(mean=3.7, sigma=1.0, size=n_items // 20).astype(np.int64))
    sizes = sizes[np.cumsum(sizes) <= n_items]
    sizes = np.append(sizes, n_items - sizes.sum()) if sizes.sum() < n_items else sizes
    n_groups = len(sizes)
    group = np.repeat(np.arange(n_groups), sizes)
    item_ids = pd.Series(np.arange(n_items)).map("i{}".format)
    units = rng.choice(["OZ", "LB", "CT", "ML"], size=n_items)
    amount = np.round(rng.lognormal(2.5, 0.6, size=n_items), 1)
    catalog = pd.DataFrame({
        "item_id": item_ids.astype(str),
        "brand": pd.Series(rng.integers(0, 5_000, n_items)).map("brand {}".format).astype(str),
        "manufacturer": pd.Series(rng.integers(0, 2_000, n_items)).map("mfr {}".format).astype(str),
        "private_label": rng.random(n_items) < 0.15,
        "department": pd.Series(group // 400).map("dept {}".format).astype(str),
        "category": pd.Series(group // 20).map("cat {}".format).astype(str),
        "product_type": pd.Series(group).map("type {}".format).astype(str),
        "package_size": (pd.Series(amount).astype(str) + " " + units).astype(str),
    })
    # events: a customer picks a group (popular groups more often), then an item of it by a Zipf law
    group_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group_pick = rng.zipf(1.1, size=n_events) % n_groups
    within = (rng.zipf(1.6, size=n_events) - 1) % sizes[group_pick]
    item = group_start[group_pick] + within
    customer = rng.integers(0, n_customers, n_events)
    day = rng.integers(0, 365, n_events)
    basket = customer.astype(np.int64) * 400 + day  # one basket per customer and day
    timestamps = pd.Timestamp("2017-01-01") + pd.to_timedelta(day * 86400 + rng.integers(0, 86400, n_events), "s")
    events = pd.DataFrame({
        "customer_id": pd.Series(customer).map("c{}".format).astype(str),
        "item_id": item_ids.to_numpy()[item],
        "session_id": pd.Series(basket).map("b{}".format).astype(str),
        "event_type": "purchase",
        "timestamp": timestamps.astype("datetime64[ns]"),
        "quantity": 1.0,
        "price": np.round(amount[item] * 0.2 + 1.0, 2),
        "store_id": pd.Series(customer % 300).map("s{}".format).astype(str),
    })
    for name in ("customer_id", "item_id", "session_id", "event_type", "store_id"):  # compact, as replicate's
        events[name] = events[name].astype(str).astype("category")
    return Dataset(events=events, catalog=catalog, reports=[])


def load_point(point: str) -> Dataset:
    from training.loaders import load_completejourney

    if point.startswith("cj-x"):
        return replicate(load_completejourney(), int(point.removeprefix("cj-x")))
    if point == "items-1m":
        return synthetic_catalog()
    raise ValueError(f"unknown point {point!r}: cj-xN or items-1m")




def train_point(point: str, out: Path) -> dict[str, object]:
    """Train one point in this process (called in a fresh child per point) and describe the run."""
    from training.pipeline import train

    start = time.perf_counter()
    dataset = load_point(point)
    load_s = time.perf_counter() - start
    result = train(dataset, out_dir=out, show_progress=False, with_report=False)
    model_bytes = sum(f.stat().st_size for f in result.model_dir.rglob("*") if f.is_file())
    return {"point": point, "events": int(len(dataset.events)), "customers": result.manifest.counts["customers"],
            "items": result.manifest.counts["items"], "load_s": round(load_s, 1),
            "train_s": result.stage_seconds["total"], "stage_seconds": result.stage_seconds,
            "stage_peak_rss_mb": result.manifest.stage_peak_rss_mb,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "model_mb": round(model_bytes / 2**20, 1), "model_dir": str(result.model_dir)}


def server_rss_mb(model_dir: Path) -> float:
    """``recsys serve``'s resident memory once it answers ``/readyz`` on this model."""
    from serving.process import memory, serving

    with serving(model_dir, env={"RECSYS_STATE_PATH": ""}, timeout_s=600) as (_, process):
        time.sleep(1.0)
        return round(memory(process.pid)["rss"] / 2**20, 1)


def run(points: list[str], out: Path) -> list[dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for point in points:
        print(f"training {point} ...", flush=True)
        child = subprocess.run([sys.executable, "-m", "benchmarks.training_scale", "--train-one", point,
                                "--out", str(out / "models" / point)],
                               capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            rows.append({"point": point, "error": child.stderr.strip().splitlines()[-1:]})
            continue
        row = json.loads(child.stdout.strip().splitlines()[-1])
        row["server_rss_mb"] = server_rss_mb(Path(str(row["model_dir"])))
        rows.append(row)
        print(_row_text(row), flush=True)
        (out / "training_scale.json").write_text(json.dumps(rows, indent=2))
    write_table(rows, out / "training_scale.md")
    plot(rows, out / "training_scale.png")
    return rows


def _row_text(row: dict[str, object]) -> str:
    stages = row["stage_seconds"]
    assert isinstance(stages, dict)
    return (f"| {row['point']} | {row['events']:,} | {row['customers']:,} | {row['items']:,} | "
            f"{row['train_s']:.0f} | {stages.get('ranker', 0):.0f} | {row['peak_rss_mb'] / 1024:.1f} | "
            f"{row['model_mb']:.0f} | {row['server_rss_mb']:.0f} |")


def write_table(rows: list[dict[str, object]], path: Path) -> None:
    lines = ["| point | events | customers | items | train s | ranker s | peak RSS GB | model MB | server RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [_row_text(r) for r in rows if "error" not in r]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot(rows: list[dict[str, object]], path: Path) -> None:
    """Stacked seconds per stage and peak RSS against events, one bar per point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "error" not in r]
    if not rows:
        return
    labels = [str(r["point"]) for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    bottom = np.zeros(len(rows))
    # points measured while other jobs ran on the machine are hatched: their times are upper bounds
    hatch = ["" if r.get("quiet_machine", True) else "//" for r in rows]
    for stage in STAGE_ORDER:
        seconds = np.array([float(r["stage_seconds"].get(stage, 0.0)) for r in rows])  # type: ignore[union-attr]
        if seconds.sum() > 0:
            left.bar(labels, seconds, bottom=bottom, label=stage, hatch=hatch)
            bottom += seconds
    left.set_ylabel("training seconds (2 cores)")
    left.set_title("time per stage")
    left.legend(fontsize=8, ncol=2)
    # a replicated series is a line; other points (the 1M-item catalog) stand alone
    for series, marker in (("cj-x", "-"), ("items", "")):
        part = [r for r in rows if str(r["point"]).startswith(series)]
        if not part:
            continue
        events = np.array([float(r["events"]) for r in part]) / 1e6  # type: ignore[arg-type]
        for key, style, label in (("peak_rss_mb", "o", "trainer peak RSS"), ("server_rss_mb", "s", "server RSS"),
                                  ("model_mb", "^", "model on disk")):
            right.plot(events, [float(r[key]) / 1024 for r in part], style + marker,  # type: ignore[arg-type]
                       color={"peak_rss_mb": "C0", "server_rss_mb": "C1", "model_mb": "C2"}[key],
                       label=label if series == "cj-x" else None)
        for x, r in zip(events, part, strict=True):
            right.annotate(str(r["point"]), (x, float(r["peak_rss_mb"]) / 1024),  # type: ignore[arg-type]
                           textcoords="offset points", xytext=(4, 4), fontsize=8)
    right.set_xlabel("events (millions)")
    right.set_ylabel("GB")
    right.set_title("memory and model size")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="cj-x1,cj-x2,cj-x4,cj-x8,cj-x16,cj-x32,items-1m")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training_scale"))
    parser.add_argument("--train-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_one:
        print(json.dumps(train_point(args.train_one, args.out)))
        return
    run(args.points.split(","), args.out)


if __name__ == "__main__":
    main()
