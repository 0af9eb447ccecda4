"""Catalog attributes at query time: what a request may ask a substitute to ``keep`` (share X's values) or
``prefer``, the values an answer shows, and the items a rule's attribute target touches.

An item's attribute is a set of values (most attributes have one: ``organic: yes``; a tag list has several:
``diet: gluten-free, vegan``). A substitute keeps X's attribute when it has each of X's values; when X has none
there is nothing to keep. Each attribute's value sets are bit masks over its values (one 64-bit word per 64
values), so keeping is a few vectorised ANDs over the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd

from recsys.domain.schema import ATTRIBUTE_PREFIX, ATTRIBUTE_VALUE_SEPARATOR, attribute_columns
from recsys.domain.types import UnknownAttributeError

#: values that say an item lacks the attribute: matching X on them is no reason to show
NEGATIVE_VALUES: Final[frozenset[str]] = frozenset({"no", "none", "false"})
#: a value that reads as the attribute's own name ("organic: yes" shows as "organic")
YES: Final[str] = "yes"
#: the score a preferred attribute kept adds (several add up, bounded like the rules' boosts)
PREFER_AMOUNT: Final[float] = 0.2

#: an item's attributes as an answer shows them: name -> its values (sorted), attributes it has no value for left out
AttributeValues = dict[str, list[str]]


class ItemAttributes:
    """The attributes of a model's items (internal index order), built once at load."""

    def __init__(self, items: pd.DataFrame) -> None:
        columns = attribute_columns(items)
        self.names: tuple[str, ...] = tuple(c.removeprefix(ATTRIBUTE_PREFIX) for c in columns)
        self._values: dict[str, dict[str, int]] = {}  # attribute -> value -> bit
        self._masks: dict[str, np.ndarray] = {}  # attribute -> (items, words) uint64
        # per distinct cell, not per item: a catalog has few distinct value sets, so a million items load fast
        combination = np.zeros(len(items), dtype=np.int64)  # which distinct combination of cells each item has
        cell_values: list[list[list[str]]] = []  # per attribute, per distinct cell, its values
        cell_codes: list[np.ndarray] = []
        for name, column in zip(self.names, columns, strict=True):
            codes, cells = pd.factorize(items[column].to_numpy(dtype=object))  # a missing cell: -1
            values = [sorted(str(cell).split(ATTRIBUTE_VALUE_SEPARATOR)) for cell in cells]
            bit = {value: n for n, value in enumerate(sorted({v for cell in values for v in cell}))}
            cell_masks = np.zeros((len(cells) + 1, max(1, (len(bit) + 63) // 64)), dtype=np.uint64)  # last: none
            for row, cell in enumerate(values):
                for value in cell:
                    cell_masks[row, bit[value] // 64] |= np.uint64(1 << (bit[value] % 64))
            self._values[name], self._masks[name] = bit, cell_masks[codes]  # code -1 takes the last row: no values
            cell_values.append(values)
            cell_codes.append(codes)
            # renumbered after each attribute, so that the code stays below items x cells (no overflow)
            combination = pd.factorize(combination * (len(cells) + 1) + (codes + 1))[0].astype(np.int64)
        # one dict per distinct combination of values, shared by the items that have it: answers show them, never
        # change them
        _, first, combination = np.unique(combination, return_index=True, return_inverse=True)
        shared = [{name: cell_values[a][cell_codes[a][i]] for a, name in enumerate(self.names)
                   if cell_codes[a][i] >= 0} for i in first.tolist()]
        self.of_item: list[AttributeValues] = [shared[c] for c in combination.tolist()]

    def check(self, names: Sequence[str]) -> None:
        """Raises :class:`UnknownAttributeError` for a name the model's catalog has no attribute of."""
        for name in names:
            if name not in self._masks:
                raise UnknownAttributeError(name, self.names)

    def keeping(self, x: int, candidates: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Which ``candidates`` keep X's values of every attribute in ``names``."""
        keep = np.ones(len(candidates), dtype=bool)
        for name in names:
            keep &= self._keeps(x, candidates, name)
        return keep

    def preferred(self, x: int, candidates: np.ndarray, names: Sequence[str]) -> np.ndarray | None:
        """Per candidate, the score :data:`PREFER_AMOUNT` adds for each attribute in ``names`` it keeps where X
        has a value that is not negative (none when X has no such attribute: nothing to prefer)."""
        bias = None
        for name in names:
            if any(v not in NEGATIVE_VALUES for v in self.of_item[x].get(name, ())):
                change = self._keeps(x, candidates, name) * PREFER_AMOUNT
                bias = change if bias is None else bias + change
        return bias

    def shared(self, x: int, c: int, names: Sequence[str]) -> list[tuple[str, str]]:
        """(attribute, value) of X's values in ``names`` that item ``c`` has too, negative values left out: the
        reasons a substitute shows for the attributes asked for."""
        mine, theirs = self.of_item[x], self.of_item[c]
        return [(name, value) for name in names for value in mine.get(name, ())
                if value not in NEGATIVE_VALUES and value in theirs.get(name, ())]

    def having(self, name: str, value: str) -> np.ndarray:
        """Which items have ``value`` of attribute ``name`` (none when the catalog has no such attribute or value:
        a rule may name an attribute another model's catalog has)."""
        bit = self._values.get(name, {}).get(value.strip().lower())
        if bit is None:
            return np.zeros(len(self.of_item), dtype=bool)
        having: np.ndarray = (self._masks[name][:, bit // 64] & np.uint64(1 << (bit % 64))) != 0
        return having

    def _keeps(self, x: int, candidates: np.ndarray, name: str) -> np.ndarray:
        masks = self._masks[name]
        wanted = masks[x]
        keeps: np.ndarray = ((masks[candidates] & wanted) == wanted).all(axis=1)
        return keeps
