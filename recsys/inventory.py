"""Live stock state, per store and item id, updated without retraining.

Keyed by item *id* (not a model's internal index) so it survives model swaps. Every store's state carries a
version that changes on each write, so an engine can cache a boolean out-of-stock mask per store and rebuild
it only when that store changed. An item nobody reported on is in stock.

Reads are served from memory. Writes go first to a :class:`StockStore` (SQLite in WAL mode by default, an
interface so a server database can replace it) and are acknowledged only once committed there, so an
acknowledged update survives a crash; on start the memory state is loaded back from the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

from recsys import storage

#: the channel a query without a store id checks
ONLINE: Final[str] = "online"


@dataclass(frozen=True, slots=True)
class StockUpdate:
    item_id: str
    in_stock: bool
    store_id: str = ONLINE
    restock_eta: datetime | None = None


@dataclass(frozen=True, slots=True)
class StockState:
    in_stock: bool
    restock_eta: datetime | None = None


class StockStore(Protocol):
    """Durable storage behind :class:`Inventory`."""

    def save(self, updates: list[StockUpdate]) -> None:
        """Persist a batch atomically; return only once it is durable."""

    def load(self) -> Iterable[StockUpdate]:
        """Every stored (store, item) state."""


def _blob(text: str) -> bytes:
    """Ids are stored as bytes: any str round-trips, even one with lone surrogates that UTF-8 text refuses."""
    return text.encode("utf-8", "surrogatepass")


def _text(blob: bytes) -> str:
    return blob.decode("utf-8", "surrogatepass")


class SqliteStockStore:
    """SQLite in WAL mode with ``synchronous=FULL``: a committed batch survives a killed process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._connection = storage.connect(self.path)
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS stock (store_id BLOB NOT NULL, item_id BLOB NOT NULL, "
            "in_stock INTEGER NOT NULL, restock_eta TEXT, updated_at TEXT DEFAULT CURRENT_TIMESTAMP, "
            "PRIMARY KEY (store_id, item_id))"
        )
        self._lock = threading.Lock()

    def save(self, updates: list[StockUpdate]) -> None:
        rows = [(_blob(u.store_id), _blob(u.item_id), int(u.in_stock),
                 u.restock_eta.isoformat() if u.restock_eta else None) for u in updates]
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                self._connection.executemany(
                    "INSERT INTO stock (store_id, item_id, in_stock, restock_eta) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (store_id, item_id) DO UPDATE SET in_stock = excluded.in_stock, "
                    "restock_eta = excluded.restock_eta, updated_at = CURRENT_TIMESTAMP", rows)
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise

    def load(self) -> list[StockUpdate]:
        with self._lock:
            rows = self._connection.execute("SELECT store_id, item_id, in_stock, restock_eta FROM stock").fetchall()
        return [StockUpdate(item_id=_text(item), store_id=_text(store), in_stock=bool(in_stock),
                            restock_eta=datetime.fromisoformat(eta) if eta else None)
                for store, item, in_stock, eta in rows]

    def close(self) -> None:
        with self._lock:
            self._connection.close()


class Inventory:
    """Thread-safe stock state in memory, written through to an optional durable :class:`StockStore`.
    Writes replace the state of (store, item)."""

    def __init__(self, store: StockStore | None = None) -> None:
        self._lock = threading.Lock()
        self._stores: dict[str, dict[str, StockState]] = {}
        # item -> stores that reported it in stock, sorted; replaced, never changed in place, so reads need no lock
        self._in_stock_at: dict[str, tuple[str, ...]] = {}
        self._versions: dict[str, int] = {}
        self._durable = store
        if store is not None:
            self._remember(list(store.load()))

    def apply(self, updates: list[StockUpdate]) -> int:
        """Apply a batch atomically (durably first, when there is a store); returns how many were applied."""
        with self._lock:
            if self._durable is not None:
                self._durable.save(updates)
            self._remember(updates)
        return len(updates)

    def _remember(self, updates: list[StockUpdate]) -> None:
        touched: dict[str, set[str]] = {}  # item -> stores that report it in stock, after this batch
        for update in updates:
            store = self._stores.setdefault(update.store_id, {})
            store[update.item_id] = StockState(update.in_stock, update.restock_eta)
            stores = touched.get(update.item_id)
            if stores is None:
                stores = touched[update.item_id] = set(self._in_stock_at.get(update.item_id, ()))
            if update.in_stock:
                stores.add(update.store_id)
            else:
                stores.discard(update.store_id)
            self._versions[update.store_id] = self._versions.get(update.store_id, 0) + 1
        for item_id, stores in touched.items():
            self._in_stock_at[item_id] = tuple(sorted(stores))

    def version(self, store_id: str) -> int:
        return self._versions.get(store_id, 0)

    def out_of_stock(self, store_id: str) -> tuple[int, list[str]]:
        """(version, ids of the items known out of stock at ``store_id``)."""
        with self._lock:
            store = self._stores.get(store_id, {})
            return self._versions.get(store_id, 0), [i for i, s in store.items() if not s.in_stock]

    def in_stock_at(self, item_id: str) -> tuple[str, ...]:
        """Stores (and channels) that *reported* ``item_id`` in stock, sorted; unreported ones are not listed."""
        return self._in_stock_at.get(item_id, ())

    def state(self, store_id: str, item_id: str) -> StockState | None:
        store = self._stores.get(store_id)
        return store.get(item_id) if store else None
