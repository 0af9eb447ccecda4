"""Whole-store stock snapshots at scale: a generated count of 1,000,000 rows over 100 stores (10,000 items each,
drawn from a 20,000-item catalog, 92% in stock) imported into a fresh SQLite state through the code path of
``recsys stock import`` (:func:`recsys.state.stock_files.read_stock_file` and
:func:`recsys.state.stock_files.apply_snapshots`: the whole file checked, then one closed-world snapshot per store).

Measured, from parquet and from CSV (each into a state of its own):

- the first import (an empty state) and the next night's (every store replaced): wall time, rows a second, and the
  state file's size after each (the database and its write-ahead log), which shows that replacing does not grow it;
- a replica: a second :class:`recsys.Inventory` on the same file, loaded once (time, and its process's RSS growth),
  then following the file as the serving sync loop does (``catch_up``, then wait ``--poll-s``, as
  :class:`serving.sync.StateSync` does on SQLite, where no notification comes): the staleness of ``--snapshots``
  single-store snapshots (each 10,000 rows, written by the same path) from the writer's acknowledgement until the
  replica's memory holds it, and how long the catch-up that applied each one took.

Run: ``python -m benchmarks.stock_import --out DIR`` (about a minute); the JSON and the table go to ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import Inventory
from recsys.state.inventory import StockUpdate
from recsys.state.stock_files import StockColumns, StockFile, apply_snapshots, read_stock_file
from recsys.state.store import open_state

MB = 2**20


def generate(path: Path, rows: int, stores: int, catalog: int, seed: int) -> pd.DataFrame:
    """``rows`` rows over ``stores`` stores (the same number each), each store's items drawn without repeats from
    a ``catalog``-item catalog, 92% in stock; written to ``path`` (parquet or CSV by its suffix)."""
    rng = np.random.default_rng(seed)
    per_store = rows // stores
    item_ids = np.array([f"sku-{n:07d}" for n in range(catalog)], dtype=object)
    frame = pd.DataFrame({
        "store_id": np.repeat(np.array([f"store-{s:03d}" for s in range(stores)], dtype=object), per_store),
        "item_id": np.concatenate([item_ids[rng.choice(catalog, per_store, replace=False)] for _ in range(stores)]),
        "in_stock": rng.random(per_store * stores) < 0.92,
    })
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return frame


def state_size_mb(path: Path) -> dict[str, float]:
    """The state file's size once its last connection closed (SQLite then checkpoints and removes the WAL)."""
    sizes = {"db_mb": path.stat().st_size / MB}
    wal = path.with_name(path.name + "-wal")
    sizes["wal_mb"] = wal.stat().st_size / MB if wal.exists() else 0.0
    return sizes


def import_file(path: Path, state_url: str) -> dict[str, Any]:
    """What ``recsys stock import FILE --store-column store_id --state URL`` does, timed."""
    started = time.perf_counter()
    stock_file = read_stock_file(path, StockColumns("store_id"))
    state = open_state(state_url)
    try:
        applied = len(list(apply_snapshots(state.stock, stock_file, unlisted_out=True)))
    finally:
        state.close()
    seconds = time.perf_counter() - started
    return {"stores": applied, "rows": stock_file.rows, "seconds": seconds, "read_s": stock_file.read_s,
            "rows_per_s": stock_file.rows / seconds}


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def staleness(state_url: str, stock_file: StockFile, snapshots: int, poll_s: float, seed: int) -> dict[str, Any]:
    """A replica loads the state, then follows it; the writer applies ``snapshots`` single-store snapshots at
    random moments (each a store's count with a tenth of its states flipped), each timed from its acknowledgement
    until the replica's version of that store changed."""
    rss_before = _rss_mb()
    replica_state = open_state(state_url)
    started = time.perf_counter()
    replica = Inventory(replica_state.stock)
    load_s = time.perf_counter() - started
    load_rss_mb = _rss_mb() - rss_before
    catch_ups: list[tuple[float, float, int]] = []  # (ended at, seconds, states changed)
    stop = threading.Event()

    def follow() -> None:  # serving.sync.StateSync._run, on SQLite: catch up, then wait for the polling interval
        while not stop.is_set():
            began = time.perf_counter()
            changed = replica.catch_up()
            if changed:
                catch_ups.append((time.perf_counter(), time.perf_counter() - began, changed))
            stop.wait(poll_s)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    rng = random.Random(seed)
    writer_state = open_state(state_url)
    delays, applied_in = [], []
    try:
        stores = list(stock_file.snapshots)
        for _ in range(snapshots):
            time.sleep(rng.uniform(0.1, 1.5 * poll_s))  # not in step with the replica's polling
            store = rng.choice(stores)
            updates = [StockUpdate(u.item_id, u.in_stock != (rng.random() < 0.1), store)
                       for u in stock_file.snapshots[store]]
            stock_file.snapshots[store] = updates
            version = replica.version(store)
            writer_state.stock.save_snapshot(store, updates, True)
            acknowledged = time.perf_counter()
            while replica.version(store) == version:
                time.sleep(0.0005)
            seen = time.perf_counter()
            delays.append(seen - acknowledged)
            applied_in.append(next((s for at, s, _ in reversed(catch_ups) if at <= seen + 0.001), float("nan")))
    finally:
        stop.set()
        follower.join(timeout=30)
        writer_state.close()
        replica_state.close()
    ms = np.asarray(delays) * 1e3
    rows_each = len(next(iter(stock_file.snapshots.values())))
    return {"poll_s": poll_s, "snapshots": snapshots, "rows_per_snapshot": rows_each,
            "replica_load_s": load_s, "replica_load_rss_mb": load_rss_mb,
            "staleness_p50_ms": float(np.percentile(ms, 50)), "staleness_p99_ms": float(np.percentile(ms, 99)),
            "staleness_max_ms": float(ms.max()),
            "catch_up_p50_ms": float(np.nanpercentile(np.asarray(applied_in) * 1e3, 50)),
            "catch_up_max_ms": float(np.nanmax(np.asarray(applied_in) * 1e3))}


def run(rows: int, stores: int, catalog: int, snapshots: int, poll_s: float, seed: int, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"rows": rows, "stores": stores, "catalog": catalog, "formats": {}}
    for suffix in (".parquet", ".csv"):
        work = out / f"work{suffix.replace('.', '-')}"
        work.mkdir(exist_ok=True)
        for stale in work.iterdir():
            stale.unlink()
        data, state = work / f"count{suffix}", work / "state.sqlite3"
        started = time.perf_counter()
        generate(data, rows, stores, catalog, seed)
        print(f"{suffix[1:]}: {rows:,} rows generated in {time.perf_counter() - started:.1f} s "
              f"({data.stat().st_size / MB:.1f} MB)", flush=True)
        url = f"sqlite:///{state}"
        first = {**import_file(data, url), **state_size_mb(state)}
        print(f"  first import: {first['seconds']:.1f} s", flush=True)
        generate(data, rows, stores, catalog, seed + 1)  # the next night's count: other items, other states
        second = {**import_file(data, url), **state_size_mb(state)}
        print(f"  second import: {second['seconds']:.1f} s", flush=True)
        result["formats"][suffix[1:]] = {"file_mb": data.stat().st_size / MB, "first": first, "second": second}
        if suffix == ".parquet":
            result["replica"] = staleness(url, read_stock_file(data, StockColumns("store_id")), snapshots, poll_s,
                                          seed)
    (out / "stock_import.json").write_text(json.dumps(result, indent=2))
    text = table(result)
    (out / "stock_import.md").write_text(text + "\n")
    print(text)
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['rows']:,} rows, {result['stores']} stores, a {result['catalog']:,}-item catalog; "
             "one closed-world snapshot per store", "",
             "| file | import | seconds | of which reading and checking | rows/s | state file MB |",
             "|---|---|---|---|---|---|"]
    for name, measured in result["formats"].items():
        for night, label in (("first", "first (empty state)"), ("second", "next night (replaces every store)")):
            row = measured[night]
            lines.append(f"| {name} ({measured['file_mb']:.0f} MB) | {label} | {row['seconds']:.1f} | "
                         f"{row['read_s']:.1f} | {row['rows_per_s']:,.0f} | {row['db_mb']:.0f} |")
    replica = result["replica"]
    lines += ["", f"A replica on the same file: loads the {result['rows']:,} rows in {replica['replica_load_s']:.1f} s "
              f"(+{replica['replica_load_rss_mb']:.0f} MB RSS), then follows it every {replica['poll_s']:g} s.", "",
              "| snapshots | rows each | staleness p50 ms | p99 ms | max ms | catch-up applying it p50 ms | max ms |",
              "|---|---|---|---|---|---|---|",
              f"| {replica['snapshots']} | {replica['rows_per_snapshot']:,} | {replica['staleness_p50_ms']:.0f} | "
              f"{replica['staleness_p99_ms']:.0f} | {replica['staleness_max_ms']:.0f} | "
              f"{replica['catch_up_p50_ms']:.0f} | {replica['catch_up_max_ms']:.0f} |"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--stores", type=int, default=100)
    parser.add_argument("--catalog", type=int, default=20_000)
    parser.add_argument("--snapshots", type=int, default=20)
    parser.add_argument("--poll-s", type=float, default=1.0, help="the replica's polling (RECSYS_STATE_POLL_S)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/stock_import"))
    args = parser.parse_args()
    run(args.rows, args.stores, args.catalog, args.snapshots, args.poll_s, args.seed, args.out)


if __name__ == "__main__":
    main()
