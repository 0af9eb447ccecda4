"""Live stock state, per store and item id, updated without retraining.

Keyed by item *id* (not a model's internal index) so it survives model swaps. Every store's state carries a
version that changes on each write, so an engine can cache a boolean out-of-stock mask per store and rebuild
it only when that store changed. An item nobody reported on is in stock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Final

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


class Inventory:
    """Thread-safe in-memory stock state. Writes replace the state of (store, item)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[str, dict[str, StockState]] = {}
        self._versions: dict[str, int] = {}

    def apply(self, updates: list[StockUpdate]) -> int:
        """Apply a batch atomically; returns how many updates were applied."""
        with self._lock:
            for update in updates:
                store = self._stores.setdefault(update.store_id, {})
                store[update.item_id] = StockState(update.in_stock, update.restock_eta)
                self._versions[update.store_id] = self._versions.get(update.store_id, 0) + 1
        return len(updates)

    def version(self, store_id: str) -> int:
        return self._versions.get(store_id, 0)

    def out_of_stock(self, store_id: str) -> tuple[int, list[str]]:
        """(version, ids of the items known out of stock at ``store_id``)."""
        with self._lock:
            store = self._stores.get(store_id, {})
            return self._versions.get(store_id, 0), [i for i, s in store.items() if not s.in_stock]

    def state(self, store_id: str, item_id: str) -> StockState | None:
        store = self._stores.get(store_id)
        return store.get(item_id) if store else None
