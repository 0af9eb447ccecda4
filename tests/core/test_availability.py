"""Answers true to the store: every substitute is reported in stock there, listed by the retailer's assortment,
or likely carried by the measured inference; never an item nobody knows the store has, unless allowed."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recsys import AvailabilityPolicy, Dataset, StockUpdate, SubstituteEngine, UnknownStoreError
from recsys.cli import app
from recsys.domain.config import TrainConfig
from recsys.state.inventory import ONLINE
from training.pipeline import train

WINDOW_DAYS = TrainConfig().assortment.window_days


def _recent(events: pd.DataFrame, window_days: float) -> tuple[set[str], dict[str, set[str]]]:
    """From the raw events, independently of the trainer: the items with an event in the chain in the last
    ``window_days``, and the same per store."""
    age = (events["timestamp"].max() - events["timestamp"]).dt.total_seconds() / 86_400
    recent = events[np.floor(age) < window_days]
    per_store = recent.dropna(subset=["store_id"]).groupby(recent["store_id"].dropna().astype(str))["item_id"]
    return set(recent["item_id"].astype(str)), {store: set(items.astype(str)) for store, items in per_store}


def _queries(engine: SubstituteEngine, n: int, seed: int) -> list[str]:
    items = engine.model.items
    return items.loc[items["n_customers"] > 0, "item_id"].astype(str).sample(n, random_state=seed).tolist()


def test_every_substitute_has_evidence_at_its_store(engine: SubstituteEngine, dataset: Dataset) -> None:
    chain, per_store = _recent(dataset.events, WINDOW_DAYS)
    store_level = set(engine.model.assortment.inferred_stores.tolist())
    report = engine.manifest.assortment
    assert report is not None and report["source"] == "inferred"
    assert report["stores"]["store_level"] == len(store_level)
    busiest = [str(s) for s in pd.Series(dataset.events["store_id"]).value_counts().index[:3]]
    shown = 0
    for store in [*busiest, ONLINE]:
        carried = per_store[store] if store in store_level else chain
        for item_id in _queries(engine, 100, seed=len(store)):
            for s in engine.substitutes(item_id, store_id=store, k=5):
                assert s.availability == "likely" and s.item_id in carried, (store, item_id, s.item_id)
                shown += 1
    assert shown > 500


def test_reports_are_stronger_than_the_inference(engine: SubstituteEngine) -> None:
    store = str(engine.model.stores[0])
    item_id = _queries(engine, 1, seed=3)[0]
    first, second, *_ = engine.substitutes(item_id, store_id=store, k=5)
    engine.inventory.apply([StockUpdate(first.item_id, False, store), StockUpdate(second.item_id, True, store)])
    answer = {s.item_id: s.availability for s in engine.substitutes(item_id, store_id=store, k=5)}
    assert first.item_id not in answer and answer[second.item_id] == "in_stock"


@pytest.mark.parametrize("writes", ["in memory", "catching up"])
def test_a_stores_codes_patched_by_updates_equal_a_full_build(engine: SubstituteEngine, writes: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Through 600 random writes (batches of single updates, some longer than the journal, open and closed-world
    snapshots, at a model store, a new store and online), a store's codes, read now and then, equal those built
    from its whole state; most rebuilds are patches, and a cache older than the journal (here 16 entries) is built
    whole. "catching up": the engine reads an inventory that follows another process's writes through SQLite
    (several at a time, closed-world snapshots rebuilt from their rows) besides making its own."""
    from recsys.query.availability import StoreAvailability
    from recsys.state import inventory as inventory_module
    from recsys.state.inventory import Inventory
    from recsys.state.store import open_state

    monkeypatch.setattr(inventory_module, "JOURNAL_LENGTH", 16)
    writers = [engine.inventory]
    if writes == "catching up":
        url = f"sqlite:///{tmp_path / 'state.sqlite3'}"
        states = [open_state(url), open_state(url)]
        reader = Inventory(states[0].stock)
        engine.use_inventory(reader)
        writers = [Inventory(states[1].stock), reader]
    availability, inventory = engine.availability, engine.inventory
    builds = {"full": 0, "patched": 0}
    for kind, method in (("full", "_build"), ("patched", "_patched")):
        def counted(*args: object, _kind: str = kind, _method: object = getattr(StoreAvailability, method)) -> object:
            result = _method(availability, *args)  # type: ignore[operator]
            builds[_kind] += result is not None
            return result
        monkeypatch.setattr(availability, method, counted)
    rng = np.random.default_rng(11)
    stores = [str(engine.model.stores[0]), "new-store", ONLINE]
    items = engine.item_ids[rng.choice(len(engine.item_ids), size=40, replace=False)].tolist()
    for step in range(600):
        store, writer = stores[step % 3], writers[int(rng.integers(len(writers)))]
        kind = rng.random()
        if kind < 0.9:
            picked = rng.choice(items, size=int(rng.integers(20, 30) if kind < 0.05 else rng.integers(1, 4)),
                                replace=False)
            writer.apply([StockUpdate(str(i), bool(rng.random() < 0.5), store) for i in picked])
        else:
            picked = rng.choice(items, size=int(rng.integers(0, 10)), replace=False)
            writer.apply_snapshot(store, [StockUpdate(str(i), bool(rng.random() < 0.5), store) for i in picked],
                                  unlisted_out=bool(rng.random() < 0.5))
        if rng.random() < 0.3:  # the reader follows the other process's writes, often several at once
            inventory.catch_up()
        fresh = StoreAvailability(engine.model.assortment, engine.item_table.index_of, engine.model.stores,
                                  inventory, engine.policy)
        # a store read now and then: its cached codes lag by more writes than the journal keeps
        for each in (s for s in stores if rng.random() < 0.15 or step == 599):
            assert np.array_equal(availability.codes(each), fresh.codes(each)), (step, each)
            blocked, expected = availability.blocked(each), fresh.blocked(each)
            assert (blocked is None) == (expected is None) and (blocked is None or np.array_equal(blocked, expected))
    assert builds["patched"] > 100 and builds["full"] > 10, builds
    if writes == "catching up":
        for state in states:
            state.close()


def test_unknown_items_are_offered_only_when_allowed(engine: SubstituteEngine) -> None:
    codes = engine.availability.codes(ONLINE)
    unknown = set(engine.item_ids[codes == 1].tolist())
    assert unknown, "the data has items with no event in the window"
    queries = _queries(engine, 150, seed=5)
    assert not {s.item_id for q in queries for s in engine.substitutes(q, k=10)} & unknown
    engine.use_policy(AvailabilityPolicy(allow_unknown_items=True))
    offered = [s for q in queries for s in engine.substitutes(q, k=10)]
    assert {s.availability for s in offered if s.item_id in unknown} == {"unknown"}


def test_an_unknown_store_is_refused_or_answered_by_the_chain(engine: SubstituteEngine) -> None:
    item_id = _queries(engine, 1, seed=4)[0]
    with pytest.raises(UnknownStoreError, match="no-such-store"):
        engine.substitutes(item_id, store_id="no-such-store")
    engine.use_policy(AvailabilityPolicy(allow_unknown_stores=True))
    answer = engine.substitutes(item_id, store_id="no-such-store")
    assert answer.store_known is False and answer.substitutes == engine.substitutes(item_id).substitutes


def test_the_assortment_file_decides_at_the_stores_it_lists(dataset: Dataset, config: TrainConfig,
                                                            tmp_path: Path) -> None:
    """A store the file covers offers only what it lists ("carried"); the others keep the inference; ids the
    model does not know are counted in the report. The file lists half of what sold at the busiest store."""
    events = dataset.events
    listed_store, other_store = (str(s) for s in events["store_id"].value_counts().index[:2])
    sold_there = events.loc[events["store_id"] == listed_store, "item_id"].astype(str).drop_duplicates()
    listed = sold_there.sample(frac=0.5, random_state=0).tolist()
    file = pd.DataFrame({"store": [listed_store] * (len(listed) + 1), "sku": [*listed, "not-in-catalog"]})
    path = tmp_path / "assortment.csv"
    file.to_csv(path, index=False)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[assortment]\nstore_id = "store"\nitem_id = "sku"\n')
    from training.assortment import read_assortment
    from training.mapping import DataMapping

    result = train(dataset, config, out_dir=tmp_path / "models", show_progress=False, with_report=False,
                   assortment=read_assortment(path, DataMapping.from_toml(mapping)))
    report = result.manifest.assortment
    assert report["source"] == "file" and report["listed"] == {"stores": 1, "rows": len(listed) + 1,
                                                              "unknown_items": 1, "items": len(listed)}
    engine = SubstituteEngine.load(result.model_dir)
    queries = _queries(engine, 120, seed=7)
    at_listed = [s for q in queries for s in engine.substitutes(q, store_id=listed_store, k=5)]
    assert at_listed and all(s.item_id in set(listed) and s.availability == "carried" for s in at_listed)
    at_other = [s for q in queries for s in engine.substitutes(q, store_id=other_store, k=5)]
    assert at_other and {s.availability for s in at_other} == {"likely"}, "the inference, where no file says"
    assert {s.item_id for s in at_other} - set(listed), "the other store is not limited to the file's list"


@pytest.mark.parametrize(("content", "problem"), [
    ("store_id,sku\n301,1\n", "missing required column(s) item_id"),
    ("store_id,item_id\n301,\n", "column 'item_id' (mapping key assortment.item_id) has 1 empty value(s)"),
])
def test_a_bad_assortment_file_exits_2_naming_it(synthetic_files: dict[str, Path], tmp_path: Path, content: str,
                                                 problem: str) -> None:
    path = tmp_path / "assortment.csv"
    path.write_text(content)
    args = ["train", "--data", str(synthetic_files["events"]), "--catalog", str(synthetic_files["catalog"]),
            "--assortment", str(path), "--out", str(tmp_path / "models"), "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())  # the terminal wraps long lines
    assert str(path) in output and problem in output
    assert not (tmp_path / "models").exists(), "nothing trained"
