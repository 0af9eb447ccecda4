"""The catalog as the query path reads it: per-item arrays and lookups, built once when a model loads."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import pandas as pd

from recsys.domain.sizes import format_quantity
from recsys.domain.types import UnknownItemError
from recsys.model.data import ModelData
from recsys.query.attributes import ItemAttributes
from recsys.query.kernels import ItemColumns

#: sizes within this log ratio are the same size (near-duplicate packs, "same size" reasons)
SAME_SIZE_TOLERANCE: Final[float] = 0.02
#: most other pack sizes of X an answer lists
MAX_VARIANTS: Final[int] = 5
#: the time scale of the ``launch_recency`` feature: exp(-days on sale / LAUNCH_DAYS)
LAUNCH_DAYS: Final[float] = 30.0


class ItemTable:
    """Per item (internal index, group order): ids, codes, sizes, prices, group ranges, the candidate's own
    features. Nothing here changes after load."""

    def __init__(self, model: ModelData) -> None:
        items = model.items
        self.n_items = model.n_items
        self.ids: np.ndarray = items["item_id"].to_numpy(dtype=object)
        self.index_of: dict[str, int] = {item_id: i for i, item_id in enumerate(self.ids)}
        self.brand_codes, brand_index = pd.factorize(items["brand"])
        self.brand_names = np.asarray(brand_index, dtype=object)
        self._brand_code = {str(name): code for code, name in enumerate(brand_index)}
        self.family_codes, _ = pd.factorize(items["size_family"])  # -1 where unknown
        self.families: list[str | None] = items["size_family"].tolist()
        self.log_size = np.log(items["size_qty"].to_numpy(np.float64)).astype(np.float32)
        # sizes within SAME_SIZE_TOLERANCE share a bucket (-1: unknown): near-duplicate packs
        self.size_bucket = np.where(np.isnan(self.log_size), -1, np.round(self.log_size / SAME_SIZE_TOLERANCE))
        self.price = items["price"].to_numpy(np.float64)
        self.log_price = np.log(self.price).astype(np.float32)
        self.private_label = items["private_label"].to_numpy(bool)
        self.cold: list[bool] = (items["n_customers"].to_numpy() == 0).tolist()  # no events: catalog only
        self.group_of, self.group_ptr = model.group_of, model.group_ptr
        # per item, [lo, hi) of its group and of its parent category
        group_ptr, parent_ptr = model.group_ptr.tolist(), model.parent_ptr.tolist()
        self.group_bounds = [(group_ptr[g], group_ptr[g + 1]) for g in model.group_of.tolist()]
        self.parent_bounds = [(parent_ptr[p], parent_ptr[p + 1]) for p in model.parent_of.tolist()]
        own_features = np.column_stack([  # in recsys.query.kernels.ITEM_FEATURES order
            self._log_relative_to_group_top(items["n_customers"].to_numpy(np.float64)),
            self._log_relative_to_group_top(items["trend"].to_numpy(np.float64)),
            self._log_relative_to_group_top(items["trial_trend"].to_numpy(np.float64)),
            np.nan_to_num(np.exp(-items["days_on_sale"].to_numpy(np.float64) / LAUNCH_DAYS)),
        ]).astype(np.float32)
        self.attributes = ItemAttributes(items)
        self.columns = ItemColumns(self.family_codes, self.log_size, self.log_price, self.brand_codes,
                                   self.private_label, own_features)

    def index(self, item_id: str) -> int:
        """Internal index of an item (raises :class:`UnknownItemError`)."""
        index = self.index_of.get(item_id)
        if index is None:
            raise UnknownItemError(item_id)
        return index

    def brand_codes_of(self, brands: list[str]) -> list[int]:
        return [code for code in map(self._brand_code.get, brands) if code is not None]

    def size_display(self) -> list[str | None]:
        """Each item's size in its family's display unit (None: unknown)."""
        return [format_quantity(math.exp(q), f) if f is not None and not math.isnan(q) else None
                for q, f in zip(self.log_size.tolist(), self.families, strict=True)]

    def variants(self) -> list[tuple[int, ...]]:
        """Per item, up to :data:`MAX_VARIANTS` other pack sizes: same brand and group, another size (an unknown
        size has none), most popular first (a group is stored so)."""
        n = self.n_items
        variants: list[tuple[int, ...]] = [()] * n
        order = np.lexsort((np.arange(n), self.brand_codes, self.group_of))  # by group, brand, index
        key = self.group_of[order].astype(np.int64) * (len(self.brand_names) + 1) + self.brand_codes[order]
        starts = np.flatnonzero(np.diff(key, prepend=-1))
        for start, end in zip(starts.tolist(), [*starts[1:].tolist(), n], strict=True):
            if end - start < 2:
                continue
            block = order[start:end]
            for x in block.tolist():
                other_size = np.abs(self.log_size[block] - self.log_size[x]) > SAME_SIZE_TOLERANCE  # False if NaN
                variants[x] = tuple(block[other_size][:MAX_VARIANTS].tolist())
        return variants

    def _log_relative_to_group_top(self, values: np.ndarray) -> np.ndarray:
        """log1p(value) / log1p(the largest value in the item's group), 0 where the group has none."""
        if not len(values):
            return values.astype(np.float32)
        top = np.log1p(np.maximum.reduceat(values, self.group_ptr[:-1]))[self.group_of]
        relative: np.ndarray = np.divide(np.log1p(values), top, out=np.zeros_like(values), where=top > 0)
        return relative.astype(np.float32)
