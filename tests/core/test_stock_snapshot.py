"""Whole-store stock snapshots on SQLite: a closed-world snapshot leaves only what it lists, "unchanged" keeps the
rest, a failure leaves nothing applied, and another process catching up by sequence number ends with exactly the
database's state (deleted rows included), also after a reopen and while writers keep writing."""

from __future__ import annotations

import random
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

import pytest

from recsys import Inventory, StockUpdate
from recsys.state.inventory import StockChanges
from recsys.state.storage import SCHEMA_VERSION, StateUnavailableError
from recsys.state.store import open_state

STORES = ("s1", "s2", "s3", "online")
ITEMS = tuple(f"i{n}" for n in range(12))


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.sqlite3'}"


def _everything(inventory: Inventory, of_stores: tuple[str, ...] = STORES) -> dict[str, object]:
    """All that the inventory says of the test's stores and items, through its public reads (not the versions,
    which count each process's own changes)."""
    stores = {}
    for store in of_stores:
        stock = inventory.store_stock(store)
        stores[store] = (sorted(stock.in_stock), sorted(stock.out_of_stock), stock.unlisted_out,
                         inventory.knows_store(store), inventory.out_of_stock(store)[1] == stock.out_of_stock)
    return {"stores": stores, "in_stock_at": {item: inventory.in_stock_at(item) for item in ITEMS},
            "states": {(store, item): inventory.state(store, item) for store in of_stores for item in ITEMS}}


def _rows(path: Path, store: str) -> list[tuple[str, int]]:
    with sqlite3.connect(path) as check:
        return sorted((bytes(item).decode(), in_stock) for item, in_stock in check.execute(
            "SELECT item_id, in_stock FROM stock WHERE store_id = ?", (store.encode(),)))


def test_a_closed_world_snapshot_leaves_only_what_it_lists(tmp_path: Path) -> None:
    state = open_state(_url(tmp_path))
    inventory = Inventory(state.stock)
    eta = datetime(2026, 12, 24, 7)
    inventory.apply([StockUpdate("i0", False, "s1", eta), StockUpdate("i1", True, "s1"), StockUpdate("i2", True, "s1"),
                     StockUpdate("i2", True, "s2")])
    before = inventory.version("s1")
    assert not inventory.store_stock("s1").unlisted_out and not inventory.knows_store("s3")
    applied = inventory.apply_snapshot("s1", [StockUpdate("i1", False, "s1"), StockUpdate("i3", True, "s1")], True)
    assert applied == 2
    stock = inventory.store_stock("s1")
    assert (stock.in_stock, stock.out_of_stock, stock.unlisted_out) == (["i3"], ["i1"], True)
    assert stock.version == inventory.version("s1") > before
    # i0 and i2 were reported, i4 never was: none of them is reported in stock, and the store is closed-world
    assert inventory.state("s1", "i0") is None and inventory.state("s1", "i2") is None
    assert inventory.in_stock_at("i2") == ("s2",) and inventory.in_stock_at("i3") == ("s1",)
    assert inventory.in_stock_at("i4") == () and inventory.out_of_stock("s1") == (stock.version, ["i1"])
    assert _rows(tmp_path / "state.sqlite3", "s1") == [("i1", 0), ("i3", 1)], "the unlisted rows are deleted"
    assert inventory.store_stock("s2").in_stock == ["i2"] and not inventory.store_stock("s2").unlisted_out
    inventory.apply([StockUpdate("i4", True, "s1")])  # a single update after a snapshot applies on top
    assert sorted(inventory.store_stock("s1").in_stock) == ["i3", "i4"] and inventory.store_stock("s1").unlisted_out
    assert _everything(Inventory(open_state(_url(tmp_path)).stock)) == _everything(inventory), "survives a reopen"
    state.close()


def test_an_unchanged_snapshot_keeps_the_rest_and_the_flag(tmp_path: Path) -> None:
    state = open_state(_url(tmp_path))
    inventory = Inventory(state.stock)
    inventory.apply([StockUpdate("i0", False, "s1"), StockUpdate("i1", True, "s1")])
    inventory.apply_snapshot("s1", [StockUpdate("i1", False, "s1"), StockUpdate("i2", True, "s1")], False)
    stock = inventory.store_stock("s1")
    assert (sorted(stock.in_stock), sorted(stock.out_of_stock), stock.unlisted_out) == (["i2"], ["i0", "i1"], False)
    inventory.apply_snapshot("s2", [StockUpdate("i5", True, "s2")], True)
    inventory.apply_snapshot("s2", [StockUpdate("i6", False, "s2")], False)
    stock = inventory.store_stock("s2")
    assert (stock.in_stock, stock.out_of_stock, stock.unlisted_out) == (["i5"], ["i6"], True), "still closed-world"
    version = inventory.version("s3")
    inventory.apply_snapshot("s3", [], False)  # an empty snapshot of a store: it is known from now on
    assert inventory.knows_store("s3") and inventory.version("s3") != version
    assert _everything(Inventory(open_state(_url(tmp_path)).stock)) == _everything(inventory)
    state.close()


def test_a_snapshot_that_fails_applies_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = open_state(_url(tmp_path))
    inventory = Inventory(state.stock)
    inventory.apply([StockUpdate("i0", False, "s1"), StockUpdate("i1", True, "s1")])
    expected, version, rows = _everything(inventory), inventory.version("s1"), _rows(path, "s1")
    with sqlite3.connect(path) as raw:  # the database refuses the snapshot's last row, after the others were written
        raw.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON stock WHEN NEW.item_id = X'{b'poison'.hex()}' "
                    "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    listed = [StockUpdate("i2", True, "s1"), StockUpdate("poison", True, "s1")]
    for unlisted_out in (True, False):
        with pytest.raises(sqlite3.DatabaseError, match="refused"):
            inventory.apply_snapshot("s1", listed, unlisted_out)
    for bad, message in (([StockUpdate("i2", True, "s1"), StockUpdate("i2", False, "s1")], "'i2' is listed twice"),
                         ([StockUpdate("i2", True, "s2")], "for store 's2' in the snapshot of store 's1'")):
        with pytest.raises(ValueError, match=message):
            inventory.apply_snapshot("s1", bad, True)
    assert _everything(inventory) == expected and inventory.version("s1") == version
    assert _rows(path, "s1") == rows
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT COUNT(*) FROM stock_snapshots").fetchone() == (0,)
    assert _everything(Inventory(open_state(_url(tmp_path)).stock)) == expected
    state.close()


class _DownStore:
    """A shared database that cannot be reached."""

    def save_stock(self, updates: list[StockUpdate]) -> int:
        raise StateUnavailableError("down")

    def save_snapshot(self, store_id: str, updates: list[StockUpdate], unlisted_out: bool) -> int:
        raise StateUnavailableError("down")

    def stock_since(self, seq: int) -> StockChanges:
        raise StateUnavailableError("down")


def test_a_store_that_is_down_applies_no_snapshot() -> None:
    inventory = Inventory(_DownStore())
    with pytest.raises(StateUnavailableError):
        inventory.apply_snapshot("s1", [StockUpdate("i0", True, "s1")], True)
    assert not inventory.knows_store("s1") and inventory.store_stock("s1") == inventory.store_stock("s9")


def catch_up_exactly(url: str, prefix: str = "") -> None:
    """Two processes' inventories on the state at ``url`` (SQLite here; PostgreSQL in the replicas' suite, with a
    ``prefix`` for its store ids): after each snapshot and update the reader catches up to exactly the writer's
    state, deleted rows included, and a fresh load of the database holds the same."""
    s1, s2, s3 = (f"{prefix}{store}" for store in STORES[:3])
    stores = (s1, s2, s3)
    writer_state, reader_state = open_state(url), open_state(url)
    writer, reader = Inventory(writer_state.stock), Inventory(reader_state.stock)
    try:
        writer.apply([StockUpdate(item, n % 3 != 0, store) for n, item in enumerate(ITEMS) for store in (s1, s2)])
        assert reader.catch_up() == 2 * len(ITEMS)
        steps = [
            lambda: writer.apply_snapshot(s1, [StockUpdate("i1", True, s1), StockUpdate("i2", False, s1)], True),
            lambda: writer.apply([StockUpdate("i3", True, s1), StockUpdate("i1", False, s2)]),
            lambda: writer.apply_snapshot(s2, [StockUpdate("i0", True, s2)], False),
            lambda: writer.apply_snapshot(s1, [StockUpdate("i9", True, s1)], True),  # a second replacement
            lambda: writer.apply_snapshot(s3, [], True),  # a store that only ever had an empty snapshot
            lambda: writer.apply([StockUpdate("i4", True, s3)]),
        ]
        for n, step in enumerate(steps):
            step()
            if n % 2:  # the reader sometimes follows each change, sometimes several at once
                reader.catch_up()
                assert _everything(reader, stores) == _everything(writer, stores), n
        version = reader.version(s1)
        reader.catch_up()
        assert _everything(reader, stores) == _everything(writer, stores)
        assert reader.catch_up() == 0 and reader.version(s1) == version
        versions = {store: writer.version(store) for store in stores}
        assert writer.catch_up() == 0, "its own writes read back change nothing"
        assert {store: writer.version(store) for store in stores} == versions
        changes = reader_state.stock.stock_since(-1)
        assert [(u.item_id, u.in_stock) for u in changes.updates if u.store_id == s1] == [("i9", True)], \
            "the rows the snapshot did not list are deleted"
        assert {(m.store_id, m.unlisted_out) for m in changes.snapshots if m.store_id in stores} == {
            (s1, True), (s2, False), (s3, True)}
        fresh_state = open_state(url)
        try:
            fresh = Inventory(fresh_state.stock)
            assert _everything(fresh, stores) == _everything(writer, stores) and fresh.seq == reader.seq
        finally:
            fresh_state.close()
    finally:
        writer_state.close()
        reader_state.close()


def test_another_process_catches_up_to_exactly_the_databases_state(tmp_path: Path) -> None:
    catch_up_exactly(_url(tmp_path))


def test_sequence_numbers_are_never_given_twice(tmp_path: Path) -> None:
    """A snapshot that deletes the rows holding the highest sequence number: the next write still gets a higher
    one, so a reader that has seen the snapshot does not skip it."""
    writer_state, reader_state = open_state(_url(tmp_path)), open_state(_url(tmp_path))
    writer, reader = Inventory(writer_state.stock), Inventory(reader_state.stock)
    writer.apply([StockUpdate("i0", True, "s2")])
    writer.apply([StockUpdate("i1", True, "s1")])
    writer.apply_snapshot("s1", [], True)
    reader.catch_up()
    writer.apply([StockUpdate("i2", False, "s1")])
    assert reader.catch_up() == 1 and reader.store_stock("s1").out_of_stock == ["i2"]
    writer_state.close()
    reader_state.close()


def concurrent_reader_ends_exact(url: str, prefix: str = "") -> None:
    """Two writers (each its own connection, as two processes) apply random snapshots and updates to the state at
    ``url`` while a reader catches up all along: at the end it holds exactly what a fresh load holds."""
    stores = tuple(f"{prefix}{store}" for store in STORES)
    states = [open_state(url) for _ in range(4)]
    reader = Inventory(states[0].stock)
    stop = threading.Event()

    def write(seed: int) -> None:
        rng = random.Random(seed)
        inventory = Inventory(states[seed].stock)
        for _ in range(60):
            store = rng.choice(stores)
            listed = [StockUpdate(item, rng.random() < 0.5, store) for item in rng.sample(ITEMS, rng.randint(0, 6))]
            if rng.random() < 0.4:
                inventory.apply_snapshot(store, listed, rng.random() < 0.6)
            else:
                inventory.apply(listed)

    def read() -> None:
        while not stop.is_set():
            reader.catch_up()

    try:
        follower = threading.Thread(target=read)
        follower.start()
        writers = [threading.Thread(target=write, args=(seed,)) for seed in (1, 2)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(timeout=120)
        stop.set()
        follower.join(timeout=60)
        reader.catch_up()
        assert _everything(reader, stores) == _everything(Inventory(states[3].stock), stores)
    finally:
        for state in states:
            state.close()


def test_a_reader_during_concurrent_snapshots_and_updates_ends_exact(tmp_path: Path) -> None:
    concurrent_reader_ends_exact(_url(tmp_path))


def test_a_version_three_file_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    Inventory(open_state(_url(tmp_path)).stock).apply([StockUpdate("i0", False, "s1"), StockUpdate("i1", True, "s1")])
    with sqlite3.connect(path) as old:  # as version 3 left it: no snapshot markers
        old.execute("DROP TABLE stock_snapshots")
        old.execute("UPDATE schema_version SET version = 3")
    inventory = Inventory(open_state(_url(tmp_path)).stock)
    stock = inventory.store_stock("s1")
    assert (stock.in_stock, stock.out_of_stock, stock.unlisted_out) == (["i1"], ["i0"], False)
    inventory.apply_snapshot("s1", [StockUpdate("i2", True, "s1")], True)
    assert _everything(Inventory(open_state(_url(tmp_path)).stock)) == _everything(inventory)
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert SCHEMA_VERSION >= 4
