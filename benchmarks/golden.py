"""Golden answers: a fixed set of queries answered by one model, written as JSON, to show that a change of code
changes no answer.

    python -m benchmarks.golden MODEL_DIR OUT.json        # then compare two runs' files (or their digests)

The queries are the latency benchmark's mix (:func:`benchmarks.latency.query_mix`: 3,000 popularity-weighted
items, 70% known customers, 20% with a filter) at a store where a seeded 10% of the catalog is out of stock, each
in every intent; 200 whole orders of 6 lines; 200 customer profiles. Everything an answer carries is written,
except the model version (two trainings of the same data differ only there).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks.latency import query_mix
from recsys import Intent, StockUpdate, SubstituteEngine


def to_plain(answer: object) -> Any:
    """An answer as the HTTP API writes it (orjson), back as plain values, without its model version."""
    return _without_version(orjson.loads(orjson.dumps(answer, default=str)))


def _without_version(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_version(item) for key, item in value.items() if key != "model_version"}
    if isinstance(value, list):
        return [_without_version(item) for item in value]
    return value


QUERIES, ORDERS, PROFILES, SEED, STORE = 3_000, 200, 200, 0, "golden-store"


def answers(engine: SubstituteEngine) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    ids = engine.model.items["item_id"].to_numpy()
    out = rng.choice(len(ids), size=len(ids) // 10, replace=False)
    engine.inventory.apply([StockUpdate(item_id=str(ids[i]), store_id=STORE, in_stock=False) for i in out])
    queries = query_mix(engine, QUERIES, SEED)
    single = [to_plain(engine.substitutes(q.item_id, q.customer_id, STORE, 10, filters=q.filters, intent=intent))
              for intent in Intent for q in queries]
    customers = engine.model.customers
    orders = [to_plain(engine.order_substitutes([q.item_id for q in queries[i:i + 6]], str(customers[i]), STORE, 5))
              for i in range(0, 6 * ORDERS, 6)]
    profiles = [to_plain(engine.customer_profile(str(c))) for c in customers[:: max(1, len(customers) // PROFILES)]]
    return {"substitutes": single, "orders": orders, "profiles": profiles}


def main(model_dir: str, out: str) -> None:
    text = json.dumps(answers(SubstituteEngine.load(Path(model_dir))), sort_keys=True, default=str)
    Path(out).write_text(text)
    print(f"{hashlib.sha256(text.encode()).hexdigest()}  {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
