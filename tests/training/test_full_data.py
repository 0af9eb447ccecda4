"""One full-data run: the whole Complete Journey through the trainer and the engine."""

from pathlib import Path

import numpy as np
import pytest

from recsys import StockUpdate, SubstituteEngine
from training.loaders import load_completejourney
from training.pipeline import train

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_full_complete_journey(tmp_path: Path) -> None:
    data = load_completejourney()
    result = train(data, out_dir=tmp_path, show_progress=False)
    counts = result.manifest.counts
    assert counts["customers"] == 2469 and counts["items"] == 92_331
    assert counts["events"] > 1_450_000
    assert result.manifest.size_parse_rate >= 0.9

    engine = SubstituteEngine.load(result.model_dir)
    rng = np.random.default_rng(0)
    items = engine.model.items
    popular = items.sort_values("n_customers", ascending=False)["item_id"].head(200).tolist()
    out = set(rng.choice(items["item_id"].to_numpy(), size=len(items) // 10, replace=False).tolist())
    engine.inventory.apply([StockUpdate(item_id=i, store_id="s", in_stock=False) for i in out])
    full = 0
    lengths = []
    for item_id in popular:
        customer = str(rng.choice(engine.model.customers))
        answer = engine.substitutes(item_id, customer_id=customer, store_id="s", k=10)
        x = engine.item_info(item_id)
        assert all(s.item_id != item_id and s.item_id not in out for s in answer)
        assert all(s.product_type == x.product_type or s.widened for s in answer)
        full += len(answer) == 10
        lengths.append(len(answer))
    # popular items sit in well-stocked groups: most get a full list; the score cut-off (no padding) may
    # leave fewer where a group has few good candidates, but never none. Store "s" is known by its reports only,
    # so it offers what sold in the chain in the last 91 days: 145 of the 200 were full on 2026-12-06 (before
    # answers offered only items with evidence, when every unreported item counted as in stock: at least 160)
    assert full >= 140 and min(lengths) >= 1
