"""Live stock state, per store and item id, updated without retraining.

Keyed by item *id* (not a model's internal index) so it survives model swaps. Every store's state carries a
version that changes on each write, so an engine can cache per-store masks and rebuild them only when that store
changed; a short journal of the items each store's recent updates touched (:meth:`Inventory.changed_since`) lets
it patch a cached mask instead of rebuilding it from the store's whole state. The inventory only records what was
reported: each (store, item)'s last state, and each store's closed-world flag (its last snapshot said "every item
not listed in stock is out"). What an unreported item means is the engine's decision (from the model's
assortment, see :mod:`recsys.query.availability`).

Stock arrives two ways: single updates (:meth:`Inventory.apply`), and whole-store snapshots
(:meth:`Inventory.apply_snapshot`, a store system's nightly count), which replace the store's stock in one step.

Reads are served from memory. Writes go first to a :class:`StockStore` (SQLite in WAL mode by default, or
PostgreSQL shared by many replicas, see :mod:`recsys.state.store`) and are acknowledged only once committed there,
so an acknowledged update survives a crash. Every committed batch or snapshot carries a sequence number, assigned
in commit order; :meth:`Inventory.catch_up` reads the rows and snapshot markers changed since the last one it saw,
which is how the memory state is loaded on start and how writes made by other processes reach this one.

A closed-world snapshot deletes the store's earlier rows in its own transaction and writes the rows it lists
with its own sequence number S, so a reader that has seen up to N < S finds every row of that store among "the
rows after N" and rebuilds the store from them alone; the store's marker, written in the same transaction,
tells it to. A reader at N >= S applies later rows on top, as for single updates.
"""

from __future__ import annotations

import bisect
import sys
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
class StoreStock:
    """What the reports say of one store: the engine builds its availability per store from this."""

    version: int  # Inventory.version(store_id) when read
    in_stock: list[str]  # item ids reported in stock
    out_of_stock: list[str]  # item ids reported out of stock
    unlisted_out: bool  # the last snapshot said every item not reported in stock is out


@dataclass(frozen=True, slots=True)
class StockState:
    in_stock: bool
    restock_eta: datetime | None = None


#: most journal entries kept per store (about 92 bytes each, so under 100 KB a store): a cached mask that is older
#: than its store's journal is built whole
JOURNAL_LENGTH: Final[int] = 1024


@dataclass(frozen=True, slots=True)
class StoreChanges:
    """The items whose state changed at one store between two versions, in their current state."""

    version: int  # Inventory.version(store_id) when read
    in_stock: list[str]
    out_of_stock: list[str]


#: the two states without a restock date, shared: a store's whole count holds tens of thousands of them
_IN_STOCK: Final[StockState] = StockState(True)
_OUT_OF_STOCK: Final[StockState] = StockState(False)


def _state_of(update: StockUpdate) -> StockState:
    if update.restock_eta is None:
        return _IN_STOCK if update.in_stock else _OUT_OF_STOCK
    return StockState(update.in_stock, update.restock_eta)


@dataclass(frozen=True, slots=True)
class SnapshotMarker:
    """A store's snapshot marker, as a reader catching up finds it."""

    store_id: str
    unlisted_out: bool  # the store's closed-world flag
    #: the sequence number of the store's last closed-world snapshot, which replaced all its rows (None: never);
    #: a reader that has not seen it rebuilds the store from the rows after its own position alone
    replaced_seq: int | None


@dataclass(frozen=True, slots=True)
class StockChanges:
    """What :meth:`StockStore.stock_since` read, all from one consistent view of the database."""

    updates: list[StockUpdate]  # the current state of every (store, item) changed after the position
    snapshots: list[SnapshotMarker]  # the markers of the stores whose snapshot came after the position
    seq: int  # the highest sequence number read (the position given when nothing changed)


class StockStore(Protocol):
    """Durable storage behind :class:`Inventory`."""

    def save_stock(self, updates: list[StockUpdate]) -> int:
        """Persist a batch atomically; return its sequence number only once it is durable. Raises
        :class:`recsys.state.storage.StateUnavailableError` when the database cannot be reached."""

    def save_snapshot(self, store_id: str, updates: list[StockUpdate], unlisted_out: bool) -> int:
        """Persist a store's snapshot atomically (see :meth:`Inventory.apply_snapshot`), with its marker; return
        its sequence number only once it is durable. Raises ValueError (:func:`check_snapshot`) or
        :class:`recsys.state.storage.StateUnavailableError`, with nothing written."""

    def stock_since(self, seq: int) -> StockChanges:
        """The current state of every (store, item) changed after ``seq`` (all of them for -1), and the markers
        of the snapshots after it, read in one transaction."""


def check_snapshot(store_id: str, updates: list[StockUpdate]) -> None:
    """Raise ValueError unless every update is for ``store_id`` and no item is listed twice."""
    seen: set[str] = set()
    for update in updates:
        if update.store_id != store_id:
            raise ValueError(f"an update for store {update.store_id!r} in the snapshot of store {store_id!r}")
        if update.item_id in seen:
            raise ValueError(f"item {update.item_id!r} is listed twice in the snapshot of store {store_id!r}")
        seen.add(update.item_id)


def id_blob(text: str) -> bytes:
    """Ids are stored as bytes: any str round-trips, even one with lone surrogates that UTF-8 text refuses."""
    return text.encode("utf-8", "surrogatepass")


def _text(blob: bytes) -> str:
    # interned: a state holds each catalog item at many stores, and the memory state then keeps one string for it
    return sys.intern(blob.decode("utf-8", "surrogatepass"))


class SqliteStockStore:
    """SQLite in WAL mode with ``synchronous=FULL``: a committed batch survives a killed process. Writers are
    serialised by ``BEGIN IMMEDIATE``, so sequence numbers follow commit order, also across processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._connection = storage.connect(self.path)
        self._lock = threading.Lock()

    def save_stock(self, updates: list[StockUpdate]) -> int:
        rows = [_row(u) for u in updates]
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                seq = self._next_seq()
                self._connection.executemany(_SQLITE_UPSERT, [(*row, seq) for row in rows])
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
        return seq

    def save_snapshot(self, store_id: str, updates: list[StockUpdate], unlisted_out: bool) -> int:
        check_snapshot(store_id, updates)
        store = id_blob(store_id)
        # one pass, the store's id encoded once: a whole count is tens of thousands of rows
        rows = [(store, id_blob(u.item_id), int(u.in_stock), u.restock_eta.isoformat() if u.restock_eta else None)
                for u in updates]
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                seq = self._next_seq()
                if unlisted_out:
                    # the store becomes exactly the listed rows: a nightly import does not grow the file
                    self._connection.execute("DELETE FROM stock WHERE store_id = ?", (store,))
                    self._connection.executemany(
                        "INSERT INTO stock (store_id, item_id, in_stock, restock_eta, seq) VALUES (?, ?, ?, ?, ?)",
                        [(*row, seq) for row in rows])
                    self._connection.execute(
                        "INSERT INTO stock_snapshots (store_id, unlisted_out, seq, replaced_seq) VALUES (?, 1, ?, ?) "
                        "ON CONFLICT (store_id) DO UPDATE SET unlisted_out = 1, seq = excluded.seq, "
                        "replaced_seq = excluded.replaced_seq, updated_at = CURRENT_TIMESTAMP", (store, seq, seq))
                else:
                    self._connection.executemany(_SQLITE_UPSERT, [(*row, seq) for row in rows])
                    # the closed-world flag and the last replacement stay as they were
                    self._connection.execute(
                        "INSERT INTO stock_snapshots (store_id, unlisted_out, seq) VALUES (?, 0, ?) "
                        "ON CONFLICT (store_id) DO UPDATE SET seq = excluded.seq, updated_at = CURRENT_TIMESTAMP",
                        (store, seq))
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
        return seq

    def _next_seq(self) -> int:
        """One more than any sequence number given so far: the markers keep the highest when a snapshot deleted
        the rows that held it, so a number is never given twice."""
        return int(self._connection.execute(
            "SELECT MAX(COALESCE((SELECT MAX(seq) FROM stock), 0), "
            "COALESCE((SELECT MAX(seq) FROM stock_snapshots), 0)) + 1").fetchone()[0])

    def stock_since(self, seq: int) -> StockChanges:
        with self._lock:
            self._connection.execute("BEGIN")  # one read transaction: rows and markers of the same commits
            try:
                rows = self._connection.execute(
                    "SELECT store_id, item_id, in_stock, restock_eta, seq FROM stock WHERE seq > ? ORDER BY seq",
                    (seq,)).fetchall()
                markers = self._connection.execute(
                    "SELECT store_id, unlisted_out, replaced_seq, seq FROM stock_snapshots WHERE seq > ?",
                    (seq,)).fetchall()
            finally:
                self._connection.execute("COMMIT")
        return StockChanges(
            [stock_update_of(store, item, in_stock, eta) for store, item, in_stock, eta, _ in rows],
            [snapshot_marker_of(*marker[:3]) for marker in markers],
            max([seq, *(row[4] for row in rows), *(marker[3] for marker in markers)]))

    def save(self, updates: list[StockUpdate]) -> None:
        self.save_stock(updates)

    def load(self) -> list[StockUpdate]:
        """Every stored (store, item) state."""
        return self.stock_since(-1).updates

    def close(self) -> None:
        with self._lock:
            self._connection.close()


_SQLITE_UPSERT: Final[str] = (
    "INSERT INTO stock (store_id, item_id, in_stock, restock_eta, seq) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (store_id, item_id) DO UPDATE SET in_stock = excluded.in_stock, "
    "restock_eta = excluded.restock_eta, updated_at = CURRENT_TIMESTAMP, seq = excluded.seq")


def _row(update: StockUpdate) -> tuple[bytes, bytes, int, str | None]:
    return (id_blob(update.store_id), id_blob(update.item_id), int(update.in_stock),
            update.restock_eta.isoformat() if update.restock_eta else None)


def stock_update_of(store: bytes, item: bytes, in_stock: object, eta: str | None) -> StockUpdate:
    return StockUpdate(item_id=_text(bytes(item)), store_id=_text(bytes(store)), in_stock=bool(in_stock),
                       restock_eta=datetime.fromisoformat(eta) if eta else None)


def snapshot_marker_of(store: bytes, unlisted_out: object, replaced_seq: int | None) -> SnapshotMarker:
    return SnapshotMarker(_text(bytes(store)), bool(unlisted_out),
                          None if replaced_seq is None else int(replaced_seq))


class Inventory:
    """Thread-safe stock state in memory, written through to an optional durable :class:`StockStore`.
    Updates replace the state of (store, item); snapshots replace a store's whole state."""

    def __init__(self, store: StockStore | None = None) -> None:
        self._lock = threading.Lock()  # the memory state; held only for memory work, never across a database call
        # orders database writes and catch-up reads, so memory applies them in the order the database did
        self._store_lock = threading.Lock()
        # store -> item -> state; a snapshot replaces a store's dict whole
        self._stores: dict[str, dict[str, StockState]] = {}
        # item -> stores that reported it in stock, sorted; replaced, never changed in place, so reads need no lock
        self._in_stock_at: dict[str, tuple[str, ...]] = {}
        # every store a report or a snapshot was applied for (version 0: none was)
        self._versions: dict[str, int] = {}
        self._closed: set[str] = set()  # stores whose last snapshot said every unlisted item is out
        # store -> (version, item id) of its updates, oldest first, since its journal's floor: the version before
        # which nothing can be patched (a closed-world snapshot's, or a closed-world flag's change, or trimming)
        self._journal: dict[str, list[tuple[int, str]]] = {}
        self._journal_floor: dict[str, int] = {}
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

    def apply_snapshot(self, store_id: str, updates: list[StockUpdate], unlisted_out: bool) -> int:
        """Replace the stock of ``store_id`` in one atomic step (durably first, when there is a store); returns
        how many items were listed.

        ``unlisted_out``: every item of the store not listed is out of stock from now on, items never reported
        included (the store becomes closed-world: only what is reported in stock is available there). Otherwise
        the listed states are applied and the rest, and the store's closed-world flag, are kept. Single updates
        after a snapshot apply on top of it. Raises ValueError when an update is for another store or an item is
        listed twice, and :class:`recsys.state.storage.StateUnavailableError` when the store is down; either way
        nothing is applied."""
        check_snapshot(store_id, updates)
        with self._store_lock:
            if self._durable is not None:
                self._durable.save_snapshot(store_id, updates, unlisted_out)
            with self._lock:
                if unlisted_out:
                    self._replace_store(store_id, {u.item_id: _state_of(u) for u in updates}, True)
                else:
                    self._remember(updates)
                    self._mark_known(store_id)
        return len(updates)

    def catch_up(self) -> int:
        """Read the changes committed to the store since the last read (by any process) into memory; returns
        how many (store, item) states and stores' closed-world flags changed. Raises
        :class:`recsys.state.storage.StateUnavailableError`."""
        if self._durable is None:
            return 0
        with self._store_lock:
            changes = self._durable.stock_since(self._seq)
            # a closed-world snapshot this process has not read yet: every current row of that store is among
            # the rows read (the snapshot deleted the older ones), so the store is rebuilt from them alone
            rebuilt: dict[str, dict[str, StockState]] = {
                marker.store_id: {} for marker in changes.snapshots
                if marker.replaced_seq is not None and marker.replaced_seq > self._seq}
            # a process reads its own writes back: skip what memory already holds, so no store's mask is rebuilt
            changed: list[StockUpdate] = []
            for update in changes.updates:
                fresh = rebuilt.get(update.store_id)
                if fresh is not None:
                    fresh[update.item_id] = _state_of(update)
                elif self.state(update.store_id, update.item_id) != _state_of(update):
                    changed.append(update)
            count = len(changed)
            with self._lock:
                for marker in changes.snapshots:
                    states = rebuilt.get(marker.store_id)
                    if states is not None:
                        count += self._replace_store(marker.store_id, states, marker.unlisted_out)
                    else:
                        count += self._set_closed(marker.store_id, marker.unlisted_out)
                        self._mark_known(marker.store_id)
                if changed:
                    self._remember(changed)
            self._seq = max(self._seq, changes.seq)
            self.synced = True
        return count

    def _replace_store(self, store_id: str, states: dict[str, StockState], unlisted_out: bool) -> int:
        """Make ``states`` the whole state of ``store_id``; returns how many item states and flags changed
        (none: the version stays, so no engine rebuilds the store's mask for a snapshot it already holds)."""
        old = self._stores.get(store_id, {})
        changed = sum(1 for item, state in states.items() if old.get(item) != state)
        changed += sum(1 for item in old if item not in states)
        changed += (store_id in self._closed) != unlisted_out
        if changed == 0 and store_id in self._versions:
            return 0
        was_in = {item for item, state in old.items() if state.in_stock}
        now_in = {item for item, state in states.items() if state.in_stock}
        for item in was_in - now_in:
            stores = tuple(s for s in self._in_stock_at.get(item, ()) if s != store_id)
            if stores:
                self._in_stock_at[item] = stores
            else:
                self._in_stock_at.pop(item, None)
        for item in now_in - was_in:
            self._in_stock_at[item] = tuple(sorted((*self._in_stock_at.get(item, ()), store_id)))
        self._stores[store_id] = states
        self._set_closed(store_id, unlisted_out)
        self._versions[store_id] = self._versions.get(store_id, 0) + 1
        self._restart_journal(store_id)
        return changed

    def _set_closed(self, store_id: str, unlisted_out: bool) -> int:
        """Set the store's closed-world flag; returns 1 if it changed (and the store's version with it)."""
        if (store_id in self._closed) == unlisted_out:
            return 0
        if unlisted_out:
            self._closed.add(store_id)
        else:
            self._closed.discard(store_id)
        self._versions[store_id] = self._versions.get(store_id, 0) + 1
        self._restart_journal(store_id)  # what an unreported item means changed: no mask can be patched
        return 1

    def _restart_journal(self, store_id: str) -> None:
        self._journal[store_id] = []
        self._journal_floor[store_id] = self._versions[store_id]

    def _mark_known(self, store_id: str) -> None:
        """A snapshot was applied for the store, even an empty one: from now on it is known (version 1 at least)."""
        if store_id not in self._versions:
            self._versions[store_id] = 1

    def _remember(self, updates: list[StockUpdate]) -> None:
        touched: dict[str, set[str]] = {}  # item -> stores that report it in stock, after this batch
        before: dict[str, int] = {}  # store -> its version before this batch
        for update in updates:
            before.setdefault(update.store_id, self._versions.get(update.store_id, 0))
            store = self._stores.setdefault(update.store_id, {})
            store[update.item_id] = _state_of(update)
            stores = touched.get(update.item_id)
            if stores is None:
                stores = touched[update.item_id] = set(self._in_stock_at.get(update.item_id, ()))
            if update.in_stock:
                stores.add(update.store_id)
            else:
                stores.discard(update.store_id)
            version = self._versions[update.store_id] = self._versions.get(update.store_id, 0) + 1
            # interned, as the ids read from the database are: one string for the item wherever it is held
            journal = self._journal.setdefault(update.store_id, [])
            journal.append((version, sys.intern(update.item_id)))
            if len(journal) > 2 * JOURNAL_LENGTH:  # a long batch (a first catch-up) holds no more than this
                del journal[:JOURNAL_LENGTH]
        for item_id, stores in touched.items():
            self._in_stock_at[item_id] = tuple(sorted(stores))
        for store_id, version in before.items():
            journal = self._journal[store_id]
            if len(journal) > JOURNAL_LENGTH:
                del journal[:len(journal) - JOURNAL_LENGTH]
                # no cache holds a version inside a batch (applied under the lock): a journal that no longer
                # reaches back to the batch's start serves none, so it is dropped rather than kept
                if journal[0][0] - 1 > version:
                    self._restart_journal(store_id)
                else:
                    self._journal_floor[store_id] = journal[0][0] - 1

    def version(self, store_id: str) -> int:
        """Changes whenever the store's state changes (0: nothing was ever applied for it)."""
        return self._versions.get(store_id, 0)

    def knows_store(self, store_id: str) -> bool:
        """Whether any stock report or snapshot was ever applied for ``store_id``."""
        return store_id in self._versions

    def store_stock(self, store_id: str) -> StoreStock:
        """The store's reports and closed-world flag, with the version they belong to (read together)."""
        with self._lock:
            store = self._stores.get(store_id, {})
            return StoreStock(self._versions.get(store_id, 0), [i for i, s in store.items() if s.in_stock],
                              [i for i, s in store.items() if not s.in_stock], store_id in self._closed)

    def changed_since(self, store_id: str, version: int) -> StoreChanges | None:
        """The items of ``store_id`` that updates changed after ``version``, in their current state; None when that
        cannot be told (a closed-world snapshot replaced the store or its closed-world flag changed since, or its
        journal of the last :data:`JOURNAL_LENGTH` changes no longer reaches back that far): then only the whole
        state (:meth:`store_stock`) says what the store holds. An open-world snapshot's items are journaled like
        single updates."""
        with self._lock:
            if version < self._journal_floor.get(store_id, 0):
                return None
            journal = self._journal.get(store_id, [])
            start = bisect.bisect_right(journal, version, key=lambda entry: entry[0])
            store = self._stores.get(store_id, {})
            changed = {item: store[item].in_stock for _, item in journal[start:]}
            return StoreChanges(self._versions.get(store_id, 0), [i for i, s in changed.items() if s],
                                [i for i, s in changed.items() if not s])

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
