"""Live stock state, per store and item id, updated without retraining.

Keyed by item *id* (not a model's internal index) so it survives model swaps. Every store's state carries a
version that changes on each write, so an engine can cache a boolean out-of-stock mask per store and rebuild
it only when that store changed. An item nobody reported on is in stock.

Reads are served from memory. Writes go first to a :class:`StockStore` (SQLite in WAL mode by default, or
PostgreSQL shared by many replicas, see :mod:`recsys.state.store`) and are acknowledged only once committed there,
so an acknowledged update survives a crash. Every committed batch carries a sequence number, assigned in
commit order; :meth:`Inventory.catch_up` reads the rows changed since the last one it saw, which is how the
memory state is loaded on start and how writes made by other processes reach this one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Protocol

from recsys.state import storage
from recsys.state.storage import StateUnavailableError

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

    def save_stock(self, updates: list[StockUpdate]) -> int:
        """Persist a batch atomically; return its sequence number only once it is durable. Raises
        :class:`recsys.state.storage.StateUnavailableError` when the database cannot be reached."""

    def stock_since(self, seq: int) -> tuple[list[StockUpdate], int]:
        """The current state of every (store, item) changed by a batch after ``seq`` (all of them for -1),
        and the highest sequence number read (``seq`` when nothing changed)."""


def id_blob(text: str) -> bytes:
    """Ids are stored as bytes: any str round-trips, even one with lone surrogates that UTF-8 text refuses."""
    return text.encode("utf-8", "surrogatepass")


def _text(blob: bytes) -> str:
    return blob.decode("utf-8", "surrogatepass")


class SqliteStockStore:
    """SQLite in WAL mode with ``synchronous=FULL``: a committed batch survives a killed process. Writers are
    serialised by ``BEGIN IMMEDIATE``, so sequence numbers follow commit order, also across processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._connection = storage.connect(self.path)
        self._lock = threading.Lock()

    def save_stock(self, updates: list[StockUpdate]) -> int:
        rows = [(id_blob(u.store_id), id_blob(u.item_id), int(u.in_stock),
                 u.restock_eta.isoformat() if u.restock_eta else None) for u in updates]
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                seq = int(self._connection.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM stock").fetchone()[0])
                self._connection.executemany(
                    "INSERT INTO stock (store_id, item_id, in_stock, restock_eta, seq) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (store_id, item_id) DO UPDATE SET in_stock = excluded.in_stock, "
                    "restock_eta = excluded.restock_eta, updated_at = CURRENT_TIMESTAMP, seq = excluded.seq",
                    [(*row, seq) for row in rows])
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
        return seq

    def stock_since(self, seq: int) -> tuple[list[StockUpdate], int]:
        with self._lock:
            rows = self._connection.execute(
                "SELECT store_id, item_id, in_stock, restock_eta, seq FROM stock WHERE seq > ? ORDER BY seq",
                (seq,)).fetchall()
        return [stock_update_of(store, item, in_stock, eta) for store, item, in_stock, eta, _ in rows], \
            max([seq, *(row[4] for row in rows)])

    def save(self, updates: list[StockUpdate]) -> None:
        self.save_stock(updates)

    def load(self) -> list[StockUpdate]:
        """Every stored (store, item) state."""
        return self.stock_since(-1)[0]

    def close(self) -> None:
        with self._lock:
            self._connection.close()


def stock_update_of(store: bytes, item: bytes, in_stock: object, eta: str | None) -> StockUpdate:
    return StockUpdate(item_id=_text(bytes(item)), store_id=_text(bytes(store)), in_stock=bool(in_stock),
                       restock_eta=datetime.fromisoformat(eta) if eta else None)


class Inventory:
    """Thread-safe stock state in memory, written through to an optional durable :class:`StockStore`.
    Writes replace the state of (store, item)."""

    def __init__(self, store: StockStore | None = None) -> None:
        self._lock = threading.Lock()  # the memory state; held only for memory work, never across a database call
        # orders database writes and catch-up reads, so memory applies them in the order the database did
        self._store_lock = threading.Lock()
        self._stores: dict[str, dict[str, StockState]] = {}
        # item -> stores that reported it in stock, sorted; replaced, never changed in place, so reads need no lock
        self._in_stock_at: dict[str, tuple[str, ...]] = {}
        self._versions: dict[str, int] = {}
        self._durable = store
        self._seq = -1  # the highest sequence number read from the store
        #: whether the memory state has been loaded from the store at least once (always, without a store)
        self.synced = store is None
        if store is not None:
            try:
                self.catch_up()
            except StateUnavailableError:
                pass  # a shared database that is down at start: the caller retries (``synced`` stays False)

    @property
    def seq(self) -> int:
        """The highest sequence number of the store read into memory (-1 before the first read)."""
        return self._seq

    def apply(self, updates: list[StockUpdate]) -> int:
        """Apply a batch atomically (durably first, when there is a store); returns how many were applied.
        Raises :class:`recsys.state.storage.StateUnavailableError`, with nothing applied, when the store is down."""
        with self._store_lock:
            if self._durable is not None:
                self._durable.save_stock(updates)
            with self._lock:
                self._remember(updates)
        return len(updates)

    def catch_up(self) -> int:
        """Read the changes committed to the store since the last read (by any process) into memory; returns
        how many (store, item) states changed. Raises :class:`recsys.state.storage.StateUnavailableError`."""
        if self._durable is None:
            return 0
        with self._store_lock:
            updates, seq = self._durable.stock_since(self._seq)
            # a process reads its own writes back: skip what memory already holds, so no store's mask is rebuilt
            changed = [u for u in updates
                       if self.state(u.store_id, u.item_id) != StockState(u.in_stock, u.restock_eta)]
            if changed:
                with self._lock:
                    self._remember(changed)
            self._seq = max(self._seq, seq)
            self.synced = True
        return len(changed)

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
