"""How each item's availability at a store is known, and so whether it may be offered there.

In order of strength:

- ``in_stock``: the store reported it in stock;
- ``carried``: no report, and the retailer's assortment file lists it for the store;
- ``likely``: no report, and the model's inference finds it likely carried (sold at that store in the window
  where store-level inference was measured trustworthy, else sold anywhere in the chain in the window);
- ``unknown``: no evidence at all: offered only when :attr:`AvailabilityPolicy.allow_unknown_items` is set;
- ``out_of_stock``: reported out, or not reported in stock at a store whose last snapshot said that every
  unlisted item is out. Never offered.

A store the service knows nothing about (not in the model, no stock report, no snapshot) is refused
(:class:`recsys.domain.types.UnknownStoreError`) unless :attr:`AvailabilityPolicy.allow_unknown_stores` is set;
then it answers by the chain-level rules. The online channel (:data:`recsys.state.inventory.ONLINE`) is always
known and follows the chain-level rules with its own reports.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Final

import numpy as np
import scipy.sparse as sp

from recsys.domain.types import Availability as AvailabilityName
from recsys.domain.types import AvailabilityPolicy
from recsys.model.assortment import Assortment
from recsys.state.inventory import ONLINE, Inventory

#: the names by code: a higher code is stronger evidence
NAMES: Final[tuple[AvailabilityName, ...]] = ("out_of_stock", "unknown", "likely", "carried", "in_stock")
OUT_OF_STOCK, UNKNOWN, LIKELY, CARRIED, IN_STOCK = range(5)
#: every item at every store: what measurements of the ranking alone use (the trainer's engines, evaluation)
EVERYTHING = AvailabilityPolicy(allow_unknown_items=True, allow_unknown_stores=True)


class StoreAvailability:
    """Per store, every item's availability code and the mask of items that may not be offered, built from the
    model's assortment and the inventory's reports, cached per store, and patched with the items that changed
    when that store's stock changes (built anew when a patch cannot tell, see :meth:`Inventory.changed_since`)."""

    def __init__(self, assortment: Assortment, index_of: Mapping[str, int], model_stores: np.ndarray,
                 inventory: Inventory, policy: AvailabilityPolicy) -> None:
        self.assortment, self.inventory = assortment, inventory
        self._index_of = index_of  # item id -> index (a dict lookup costs far less than pandas' per call)
        self._listed_row = {str(s): i for i, s in enumerate(assortment.listed_stores)}
        self._inferred_row = {str(s): i for i, s in enumerate(assortment.inferred_stores)}
        self._known = {ONLINE, *(str(s) for s in model_stores), *assortment.stores()}
        chain = np.where(assortment.chain, LIKELY, UNKNOWN).astype(np.int8)
        chain.flags.writeable = False
        self._chain_codes = chain
        self._lock = threading.Lock()
        self.set_policy(policy)

    def set_policy(self, policy: AvailabilityPolicy) -> None:
        self.policy = policy
        self._lowest_offered = UNKNOWN if policy.allow_unknown_items else LIKELY
        self._chain_blocked = self._blocked(self._chain_codes)
        self.clear()

    def knows(self, store: str) -> bool:
        """Whether anything is known of ``store``: the model's sales or assortment, or a stock report."""
        return store in self._known or self.inventory.knows_store(store)

    def codes(self, store: str) -> np.ndarray:
        """Every item's availability code at ``store`` (index into :data:`NAMES`); read-only."""
        return self._entry(store)[1]

    def blocked(self, store: str) -> np.ndarray | None:
        """Which items may not be offered at ``store`` (None: every item may)."""
        return self._entry(store)[2]

    def name(self, store: str, item: int) -> AvailabilityName:
        return NAMES[int(self.codes(store)[item])]

    def clear(self) -> None:
        """Forget the cached masks (the inventory or the policy they came from was replaced)."""
        # store -> (inventory version, codes, blocked); replaced whole, so a reader never sees a half-built entry
        self._cache: dict[str, tuple[int, np.ndarray, np.ndarray | None]] = {}

    def _entry(self, store: str) -> tuple[int, np.ndarray, np.ndarray | None]:
        cache = self._cache  # a clear() replaces it: an entry built while it ran goes to the old one, unused
        version = self.inventory.version(store)
        cached = cache.get(store)
        if cached is not None and cached[0] == version:
            return cached
        with self._lock:  # one build per store change, not one per concurrent request
            cached = cache.get(store)
            if cached is None or cached[0] < version:  # newer than this thread's version read: already done
                cached = (self._patched(store, cached) if cached is not None else None) or self._build(store)
                cache[store] = cached
        return cached

    def _build(self, store: str) -> tuple[int, np.ndarray, np.ndarray | None]:
        stock = self.inventory.store_stock(store)
        base = self._base_codes(store)
        if stock.version == 0 and base is self._chain_codes:
            return 0, base, self._chain_blocked  # shared by every store answered at chain level
        codes = np.full(len(base), OUT_OF_STOCK, dtype=np.int8) if stock.unlisted_out else base.copy()
        return stock.version, *self._reported(codes, stock.in_stock, stock.out_of_stock)

    def _patched(self, store: str, cached: tuple[int, np.ndarray, np.ndarray | None]
                 ) -> tuple[int, np.ndarray, np.ndarray | None] | None:
        """The cached codes with the items changed since they were built set anew (a store's whole state holds
        tens of thousands of reports, a single update one); None when only a full build can tell."""
        changes = self.inventory.changed_since(store, cached[0])
        if changes is None:
            return None
        return changes.version, *self._reported(cached[1].copy(), changes.in_stock, changes.out_of_stock)

    def _reported(self, codes: np.ndarray, in_stock: list[str], out_of_stock: list[str]
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """``codes`` (written in place, then made read-only) with the reported items set, and the blocked mask."""
        index_of = self._index_of
        for ids, code in ((in_stock, IN_STOCK), (out_of_stock, OUT_OF_STOCK)):
            if ids:
                positions = np.fromiter((index_of.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
                codes[positions[positions >= 0]] = code
        codes.flags.writeable = False
        return codes, self._blocked(codes)

    def _base_codes(self, store: str) -> np.ndarray:
        """The evidence before reports: the file's list for a store it covers, else the store's own inference
        where it was trusted, else the chain's."""
        row = self._listed_row.get(store)
        if row is not None:
            return self._row_codes(self.assortment.listed, row, CARRIED)
        row = self._inferred_row.get(store)
        if row is not None:
            return self._row_codes(self.assortment.inferred, row, LIKELY)
        return self._chain_codes

    def _row_codes(self, matrix: sp.csr_matrix, row: int, code: int) -> np.ndarray:
        codes = np.full(self.assortment.n_items, UNKNOWN, dtype=np.int8)
        codes[matrix.indices[matrix.indptr[row]:matrix.indptr[row + 1]]] = code
        return codes

    def _blocked(self, codes: np.ndarray) -> np.ndarray | None:
        blocked = codes < self._lowest_offered
        if not blocked.any():
            return None
        blocked.flags.writeable = False
        return blocked
