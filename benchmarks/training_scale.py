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

Two ways in (``--via``): ``api`` hands the trainer the frame in Python (``training.pipeline.train``); ``cli``
writes the point as a retailer's parquet lake (a directory of monthly parts), its catalog as a parquet file and
a mapping TOML, then times ``recsys train --data LAKE --catalog CATALOG --mapping MAPPING`` in a child process, so
the loaders' own cost is in the curve.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

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




#: the lake's retailer-like column for each canonical events column (the Complete Journey's events are all
#: purchases: the lake has no event type column, so every row reads as a purchase)
LAKE_EVENT_COLUMNS = {"customer_id": "loyalty_card", "item_id": "sku", "session_id": "basket_id",
                      "timestamp": "sold_at", "quantity": "units", "price": "unit_price", "store_id": "store_no"}
#: the catalog file's column for each canonical catalog column
LAKE_CATALOG_COLUMNS = {"item_id": "sku", "brand": "brand_name", "manufacturer": "maker", "private_label": "own_brand",
                        "department": "dept", "category": "category", "product_type": "subcategory",
                        "package_size": "pack_size"}


def write_lake(dataset: Dataset, directory: Path) -> dict[str, Path]:
    """``dataset`` as a retailer would hand it over: ``events/month=YYYY-MM/part-0.parquet`` (ids as plain text,
    which parquet stores dictionary-encoded, as Spark or pyarrow would write them), ``catalog.parquet`` and
    ``mapping.toml`` naming their columns. Returns the three paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if set(dataset.events["event_type"].astype(str).unique()) != {"purchase"}:
        raise ValueError("write_lake writes purchases only: the lake has no event type column")
    paths = {"events": directory / "events", "catalog": directory / "catalog.parquet",
             "mapping": directory / "mapping.toml"}
    paths["events"].mkdir(parents=True, exist_ok=True)
    events = dataset.events[list(LAKE_EVENT_COLUMNS)]
    months = events["timestamp"].to_numpy().astype("datetime64[M]")
    for month in np.unique(months):
        part = events[months == month]
        # each part's ids only (a categorical carries every id of the whole frame)
        part = part.assign(**{name: part[name].cat.remove_unused_categories() for name in part.columns
                              if isinstance(part[name].dtype, pd.CategoricalDtype)})
        table = pa.Table.from_pandas(part.rename(columns=LAKE_EVENT_COLUMNS), preserve_index=False)
        text = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                          for f in table.schema])
        folder = paths["events"] / f"month={np.datetime_as_string(month, unit='M')}"
        folder.mkdir(exist_ok=True)
        pq.write_table(table.cast(text), folder / "part-0.parquet")
    catalog = dataset.catalog[list(LAKE_CATALOG_COLUMNS)].rename(columns=LAKE_CATALOG_COLUMNS)
    catalog.to_parquet(paths["catalog"], index=False)
    lines = ["[events]", *(f'{key} = "{column}"' for key, column in LAKE_EVENT_COLUMNS.items()),
             "", "[catalog]", *(f'{key} = "{column}"' for key, column in LAKE_CATALOG_COLUMNS.items())]
    paths["mapping"].write_text("\n".join(lines) + "\n")
    return paths


def recsys_command() -> list[str]:
    """The ``recsys`` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "recsys"
    return [str(script)] if script.exists() else [sys.executable, "-m", "recsys.cli"]


def train_point_cli(point: str, out: Path) -> dict[str, object]:
    """Write the point as a parquet lake, train it with ``recsys train`` in a child process and describe the run:
    the child's wall time and peak RSS (its own rusage, from ``wait4``), the model's manifest for the rest."""
    from recsys.model.artifact import read_manifest

    dataset = load_point(point)
    events = len(dataset.events)
    shutil.rmtree(out, ignore_errors=True)
    paths = write_lake(dataset, out / "lake")
    del dataset  # the parent holds no data while the child trains
    lake_bytes = sum(f.stat().st_size for f in paths["events"].rglob("*.parquet"))
    command = [*recsys_command(), "train", "--data", str(paths["events"]), "--catalog", str(paths["catalog"]),
               "--mapping", str(paths["mapping"]), "--out", str(out / "models"), "--no-progress", "--json"]
    start = time.perf_counter()
    with (out / "stdout.json").open("w") as stdout, (out / "stderr.log").open("w") as stderr:
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr,
                                 env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest of all children
        child.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"recsys train exited {child.returncode}: "
                           + (out / "stderr.log").read_text().strip()[-3000:])
    summary = json.loads((out / "stdout.json").read_text())
    model_dir = Path(summary["model_dir"])
    manifest = read_manifest(model_dir, verify=False)
    model_bytes = sum(f.stat().st_size for f in model_dir.rglob("*") if f.is_file())
    train_s = float(summary["stage_seconds"]["total"])
    return {"point": point, "via": "cli", "events": events, "customers": manifest.counts["customers"],
            "items": manifest.counts["items"], "load_s": round(wall_s - train_s, 1), "wall_s": round(wall_s, 1),
            "train_s": train_s, "stage_seconds": summary["stage_seconds"],
            "stage_peak_rss_mb": manifest.stage_peak_rss_mb,
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "model_mb": round(model_bytes / 2**20, 1),
            "lake_mb": round(lake_bytes / 2**20, 1), "model_dir": str(model_dir)}


def train_point(point: str, out: Path) -> dict[str, object]:
    """Train one point in this process (called in a fresh child per point) and describe the run."""
    from training.pipeline import train

    start = time.perf_counter()
    dataset = load_point(point)
    load_s = time.perf_counter() - start
    result = train(dataset, out_dir=out, show_progress=False, with_report=False)
    model_bytes = sum(f.stat().st_size for f in result.model_dir.rglob("*") if f.is_file())
    return {"point": point, "via": "api", "events": int(len(dataset.events)),
            "customers": result.manifest.counts["customers"], "items": result.manifest.counts["items"],
            "load_s": round(load_s, 1), "train_s": result.stage_seconds["total"], "stage_seconds": result.stage_seconds,
            "stage_peak_rss_mb": result.manifest.stage_peak_rss_mb,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "model_mb": round(model_bytes / 2**20, 1), "model_dir": str(result.model_dir)}


def server_rss_mb(model_dir: Path) -> float:
    """``recsys serve``'s resident memory once it answers ``/readyz`` on this model."""
    from serving.process import memory, serving

    with serving(model_dir, env={"RECSYS_STATE_PATH": ""}, timeout_s=600) as (_, process):
        time.sleep(1.0)
        return round(memory(process.pid)["rss"] / 2**20, 1)


def run(points: list[str], out: Path, via: Literal["api", "cli"] = "api") -> list[dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for point in points:
        print(f"training {point} through the {via} ...", flush=True)
        if via == "cli":
            try:
                row = train_point_cli(point, out / "cli" / point)
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                rows.append({"point": point, "via": via, "error": str(exc).splitlines()[-1:]})
                continue
            row["server_rss_mb"] = server_rss_mb(Path(str(row["model_dir"])))
            rows.append(row)
            print(_row_text(row), flush=True)
            (out / "training_scale.json").write_text(json.dumps(rows, indent=2))
            continue
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


def _label(row: dict[str, object]) -> str:
    """The point's name, with ``(cli)`` when it was trained through the command line."""
    return f"{row['point']} (cli)" if row.get("via") == "cli" else str(row["point"])


def _row_text(row: dict[str, object]) -> str:
    stages = row["stage_seconds"]
    assert isinstance(stages, dict)
    return (f"| {_label(row)} | {row['events']:,} | {row['customers']:,} | {row['items']:,} | "
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
    labels = [_label(r) for r in rows]
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
            right.annotate(_label(r), (x, float(r["peak_rss_mb"]) / 1024),  # type: ignore[arg-type]
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
    parser.add_argument("--via", choices=("api", "cli"), default="api",
                        help="api: the frame handed to the trainer in Python; cli: `recsys train` on a parquet lake")
    parser.add_argument("--train-one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_one:
        print(json.dumps(train_point(args.train_one, args.out)))
        return
    run(args.points.split(","), args.out, args.via)


if __name__ == "__main__":
    main()
