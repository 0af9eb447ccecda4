"""New items (catalog only, no events): recsys add-items, metadata-based substitutes in both directions, and
every other answer unchanged."""

from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from recsys import StockUpdate, SubstituteEngine
from recsys.cli import app


def test_new_items_get_and_give_substitutes_without_retraining(model_dir: Path, tmp_path: Path) -> None:
    old = SubstituteEngine.load(model_dir)
    items = old.model.items
    blocked = old.availability.blocked("online")
    offered = np.ones(len(items), dtype=bool) if blocked is None else ~blocked
    warm = items[(items["n_customers"] > 0).to_numpy() & offered]  # sold, and recently enough to be offered
    sizes = warm.groupby(["department", "category", "product_type"])["item_id"].transform("size")
    template = warm[(sizes >= 5) & (sizes <= 15) & warm["price"].notna()].iloc[0]
    new_rows = pd.DataFrame([
        {**template[["brand", "department", "category", "product_type", "package_size"]].to_dict(),
         "item_id": "NEW-1", "price": template["price"], "private_label": template["private_label"]},
        {**template[["department", "category", "product_type"]].to_dict(), "item_id": "NEW-2",
         "brand": "Brand new", "package_size": template["package_size"], "price": template["price"] * 1.1},
        {**template[["brand", "department", "category", "product_type"]].to_dict(), "item_id": template["item_id"]},
    ])
    catalog = tmp_path / "new.csv"
    new_rows.to_csv(catalog, index=False)
    models = tmp_path / "models"
    result = CliRunner().invoke(app, ["add-items", "--catalog", str(catalog), "--model", str(model_dir),
                                      "--out", str(models)])
    assert result.exit_code == 0, result.output
    assert "2 new items" in result.output
    engine = SubstituteEngine.load(models / "current")
    assert len(engine.item_ids) == len(old.item_ids) + 2
    assert engine.manifest.catalog_updates[-1] == {"from": old.version, "added": 2}
    assert engine.model.reranker and engine.model.reranker == old.model.reranker, "the ranker is kept"

    x = str(template["item_id"])
    answer = engine.substitutes("NEW-1", k=10)
    assert answer.metadata_based and len(answer) > 0
    assert not old.substitutes(x).metadata_based
    assert all((s.department, s.category) == (template["department"], template["category"]) for s in answer)
    assert x in [s.item_id for s in answer], "its own brand's same-size item is among its substitutes"
    # the re-ranker learned from items with sales: a catalog-only X is ranked by the linear score alone
    def linear_scores(item_id: str) -> dict[str, float]:
        candidates, features, _ = engine.candidates(engine.index_of(item_id), None)
        return dict(zip(engine.item_ids[candidates].tolist(), engine.scorer.linear(features).tolist(), strict=True))

    linear = linear_scores("NEW-1")
    assert all(abs(s.score - linear[s.item_id]) < 1e-4 for s in answer)
    linear = linear_scores(x)
    assert any(abs(s.score - linear[s.item_id]) > 1e-4 for s in engine.substitutes(x)), "X with sales: re-ranked"
    offered = {s.item_id: s for s in engine.substitutes(x, k=100)}
    assert "NEW-1" not in offered, "no stock report and no assortment says any store has it: not offered"
    engine.inventory.apply([StockUpdate("NEW-1", True)])  # the online channel reports it in stock
    offered = {s.item_id: s for s in engine.substitutes(x, k=100)}
    assert "NEW-1" in offered and "new in the catalog" in offered["NEW-1"].reasons
    assert offered["NEW-1"].availability == "in_stock"

    # items of other groups answer exactly as before, personal answers included
    group = (template["department"], template["category"], template["product_type"])
    others = warm[warm[["department", "category", "product_type"]].apply(tuple, axis=1) != group]
    customer = str(old.model.customers[0])
    for item_id in others["item_id"].sample(100, random_state=0):
        new_answer, old_answer = (e.substitutes(item_id, customer_id=customer) for e in (engine, old))
        assert new_answer.substitutes == old_answer.substitutes and new_answer.variants == old_answer.variants

    again = CliRunner().invoke(app, ["add-items", "--catalog", str(catalog), "--model", str(models / "current"),
                                     "--out", str(models)])
    assert again.exit_code == 0 and "nothing to do" in again.output


def test_add_items_refuses_a_catalog_without_groups(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("item_id,brand\n1,x\n")
    result = CliRunner().invoke(app, ["add-items", "--catalog", str(tmp_path / "bad.csv"), "--model",
                                      str(model_dir), "--out", str(tmp_path / "models")])
    assert result.exit_code == 2 and "missing columns: department, category, product_type" in result.output
