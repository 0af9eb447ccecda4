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
        per_item: list[list[tuple[str, list[str]]]] = [[] for _ in range(len(items))]
        for name, column in zip(self.names, columns, strict=True):
            cells = items[column].astype(object).where(items[column].notna(), None).tolist()
            sets = [sorted(cell.split(ATTRIBUTE_VALUE_SEPARATOR)) if isinstance(cell, str) else [] for cell in cells]
            bit = {value: n for n, value in enumerate(sorted({v for values in sets for v in values}))}
            masks = np.zeros((len(items), max(1, (len(bit) + 63) // 64)), dtype=np.uint64)
            for i, values in enumerate(sets):
                for value in values:
                    masks[i, bit[value] // 64] |= np.uint64(1 << (bit[value] % 64))
                if values:
                    per_item[i].append((name, values))
            self._values[name], self._masks[name] = bit, masks
        # one dict per distinct combination, shared by the items that have it: answers show them, never change them
        shared: dict[tuple[tuple[str, tuple[str, ...]], ...], AttributeValues] = {}
        self.of_item: list[AttributeValues] = [
            shared.setdefault(tuple((n, tuple(v)) for n, v in pairs), {n: v for n, v in pairs}) for pairs in per_item]

    def __bool__(self) -> bool:
        return bool(self.names)

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
