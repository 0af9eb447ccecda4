"""`recsys export`: every item's top k per store, with that store's live availability, equal to the engine."""

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from recsys import Inventory, StockUpdate, SubstituteEngine
from recsys.cli import app
from recsys.state.inventory import SqliteStockStore


def test_export_matches_the_engine_and_each_stores_stock(model_dir: Path, tmp_path: Path) -> None:
    engine = SubstituteEngine.load(model_dir)
    rng = np.random.default_rng(0)
    out_of_stock = set(rng.choice(engine.item_ids, size=len(engine.item_ids) // 5, replace=False).tolist())
    state = tmp_path / "state.sqlite3"
    Inventory(SqliteStockStore(state)).apply([StockUpdate(i, in_stock=False, store_id="S1") for i in out_of_stock])

    out = tmp_path / "exports" / "subs.parquet"
    result = CliRunner().invoke(app, ["export", "--model", str(model_dir), "--out", str(out), "--k", "3",
                                      "--store", "S1", "--store", "online", "--state", str(state),
                                      "--items-with-events-only", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "items/s" in result.output and result.output.strip().endswith(str(out))
    table = pd.read_parquet(out)
    with_events = engine.model.items.loc[engine.model.items["n_customers"] > 0, "item_id"].astype(str)
    assert set(table["store_id"]) == {"S1", "online"}
    assert set(table["item_id"]) <= set(with_events) and table["item_id"].nunique() > 0.9 * len(with_events)
    assert (table["item_id"] != table["substitute_id"]).all()
    ranks = table.groupby(["store_id", "item_id"])["rank"].agg(list)
    assert all(r == list(range(1, len(r) + 1)) and len(r) <= 3 for r in ranks)
    s1 = table[table["store_id"] == "S1"]
    assert not set(s1["substitute_id"]) & out_of_stock
    assert set(table.loc[table["store_id"] == "online", "substitute_id"]) & out_of_stock

    check = Inventory(SqliteStockStore(state))
    live = SubstituteEngine.load(model_dir, check)
    for item_id in rng.choice(with_events.to_numpy(), size=50, replace=False):
        expected = [s.item_id for s in live.substitutes(item_id, store_id="S1", k=3)]
        assert s1.loc[s1["item_id"] == item_id].sort_values("rank")["substitute_id"].tolist() == expected


def test_export_refuses_a_missing_state_file(model_dir: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export", "--model", str(model_dir), "--out", str(tmp_path / "x.parquet"),
                                      "--state", str(tmp_path / "nope.sqlite3")])
    assert result.exit_code == 2 and "no such inventory database" in result.output
    assert not (tmp_path / "x.parquet").exists()
