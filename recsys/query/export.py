"""``recsys export``: the top-k substitutes of every item, as a parquet table for caches and picking lists."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from recsys.query.engine import SubstituteEngine
from recsys.state.inventory import ONLINE

#: one row per (store, item, rank)
EXPORT_SCHEMA = pa.schema([
    ("store_id", pa.string()),
    ("item_id", pa.string()),
    ("rank", pa.int16()),
    ("substitute_id", pa.string()),
    ("score", pa.float32()),
    ("size_ratio", pa.float32()),
    ("price_difference", pa.float32()),
    ("widened", pa.bool_()),
    ("reasons", pa.list_(pa.string())),
])
_BATCH_ITEMS = 5_000  # items per written row group: bounded memory on any catalog size


@dataclass(frozen=True)
class ExportStats:
    path: Path
    items: int
    rows: int
    items_without_substitutes: int
    seconds: float

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


def export_substitutes(engine: SubstituteEngine, path: Path, k: int = 10, stores: Sequence[str] = (ONLINE,),
                       items_with_events_only: bool = False, show_progress: bool = True) -> ExportStats:
    """Write the non-personal top-``k`` of every item for each store (its live availability applied) to
    ``path``, written to a temporary file and renamed, so a failed export never leaves a partial table."""
    items = engine.model.items
    ids = items.loc[items["n_customers"] > 0, "item_id"] if items_with_events_only else items["item_id"]
    item_ids = ids.astype(str).tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    rows = empty = 0
    started = time.perf_counter()
    bar = tqdm(total=len(item_ids) * len(stores), desc="export", unit="item", disable=not show_progress)
    try:
        with pq.ParquetWriter(partial, EXPORT_SCHEMA) as writer:
            for store in stores:
                for start in range(0, len(item_ids), _BATCH_ITEMS):
                    columns: dict[str, list[object]] = {name: [] for name in EXPORT_SCHEMA.names}
                    for item_id in item_ids[start:start + _BATCH_ITEMS]:
                        answer = engine.substitutes(item_id, store_id=store, k=k)
                        empty += not answer.substitutes
                        for rank, s in enumerate(answer, start=1):
                            for name, value in (("store_id", store), ("item_id", item_id), ("rank", rank),
                                                ("substitute_id", s.item_id), ("score", s.score),
                                                ("size_ratio", s.size_ratio),
                                                ("price_difference", s.price_difference),
                                                ("widened", s.widened), ("reasons", list(s.reasons))):
                                columns[name].append(value)
                    writer.write_table(pa.table(columns, schema=EXPORT_SCHEMA))
                    rows += len(columns["item_id"])
                    bar.update(min(_BATCH_ITEMS, len(item_ids) - start))
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    return ExportStats(path=path, items=len(item_ids) * len(stores), rows=rows, items_without_substitutes=empty,
                       seconds=time.perf_counter() - started)
