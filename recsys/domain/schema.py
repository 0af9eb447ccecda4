"""The typed data contract between loaders, trainer and engine.

Every source (The Complete Journey, a retailer's event log) is turned into two frames:

``events`` (one row per interaction)
    customer_id (str), item_id (str), session_id (str), event_type (str), timestamp (datetime64[ns]),
    quantity (float), price (float unit price, NaN when unknown), store_id (str or NA)

``catalog`` (one row per item)
    item_id (str), brand (str), manufacturer (str), private_label (bool), department (str),
    category (str), product_type (str), package_size (str or NA); optionally list_price (float, NaN when
    unknown: an item's price where its events carry none, e.g. a catalog-only item) and catalog attributes
    (``attribute.<name>``, see :data:`ATTRIBUTE_PREFIX`)

Ids are strings everywhere, so numeric and opaque ids from any retailer behave the same.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import pandas as pd

EVENT_COLUMNS: Final[tuple[str, ...]] = (
    "customer_id", "item_id", "session_id", "event_type", "timestamp", "quantity", "price", "store_id",
)
CATALOG_COLUMNS: Final[tuple[str, ...]] = (
    "item_id", "brand", "manufacturer", "private_label", "department", "category", "product_type", "package_size",
)
#: an optional catalog column: the item's price where its events carry none
LIST_PRICE: Final[str] = "list_price"
#: the name prefix of an optional catalog (and ``items.parquet``) column that holds a catalog attribute, e.g.
#: ``attribute.diet``: its values are lower-case text, several joined by :data:`ATTRIBUTE_VALUE_SEPARATOR`
#: (sorted), NA where the item has none
ATTRIBUTE_PREFIX: Final[str] = "attribute."
ATTRIBUTE_VALUE_SEPARATOR: Final[str] = "|"


def attribute_columns(frame: pd.DataFrame) -> list[str]:
    """The frame's catalog attribute columns (``attribute.*``), in their order."""
    return [str(c) for c in frame.columns if str(c).startswith(ATTRIBUTE_PREFIX)]


def catalog_columns(frame: pd.DataFrame) -> list[str]:
    """:data:`CATALOG_COLUMNS` and the frame's attribute columns: what describes an item."""
    return [*CATALOG_COLUMNS, *attribute_columns(frame)]
#: event types whose rows count as a purchase (purchase counts, bought-instead signal, evaluation)
PURCHASE_TYPES: Final[frozenset[str]] = frozenset({"purchase", "substitution_accepted"})
#: placeholder for a missing category level, so every item still has a substitution group
UNKNOWN: Final[str] = "UNKNOWN"


#: the most values a report names per skip reason
NAMED_VALUES: Final[int] = 20


class DataValidationError(ValueError):
    """Input data cannot be used (missing columns, no usable rows). The message says what to fix."""


@dataclass
class ValidationReport:
    """What a loader read, kept and skipped, and why. Printed in the training summary."""

    source: str
    rows_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    #: reason -> the values that caused it and their row counts (see :meth:`name_values`)
    skipped_values: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def rows_used(self) -> int:
        return self.rows_read - self.rows_skipped

    def skip(self, reason: str, count: int) -> None:
        if count:
            self.skipped[reason] += int(count)

    def name_values(self, reason: str, counts: Mapping[object, int]) -> None:
        """Name the values behind a skip ``reason`` with their row counts, the :data:`NAMED_VALUES` most frequent:
        an event name nobody mapped is worth more to a user named than counted."""
        named = Counter(self.skipped_values.get(reason, {}))
        named.update({str(value): int(n) for value, n in counts.items() if n})
        if named:
            self.skipped_values[reason] = dict(named.most_common(NAMED_VALUES))

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "skipped": dict(self.skipped),
            **({"skipped_values": self.skipped_values} if self.skipped_values else {}),
        }


@dataclass
class Dataset:
    """Events plus the catalog that describes their items, with the report of how they were loaded."""

    events: pd.DataFrame
    catalog: pd.DataFrame
    reports: list[ValidationReport]

    def __post_init__(self) -> None:
        missing = [c for c in EVENT_COLUMNS if c not in self.events.columns]
        missing += [c for c in CATALOG_COLUMNS if c not in self.catalog.columns]
        if missing:
            raise DataValidationError(f"dataset is missing columns: {', '.join(missing)}")

    @classmethod
    def combine(cls, parts: list[Dataset]) -> Dataset:
        """Concatenate sources; for an item described by several catalogs the first description wins."""
        from pandas.api.types import union_categoricals

        if len(parts) == 1:
            return parts[0]
        frames = [p.events for p in parts]
        # the event logs' categorical ids stay categorical (concat turns differing categories into per-row text)
        categorical = [name for name in frames[0].columns
                       if all(isinstance(f[name].dtype, pd.CategoricalDtype) for f in frames)
                       and len({f[name].cat.categories.dtype for f in frames}) == 1]
        events = pd.concat([f.drop(columns=categorical) for f in frames], ignore_index=True)
        for name in categorical:
            events[name] = union_categoricals([f[name] for f in frames], ignore_order=True)
        events = events[list(frames[0].columns)]
        catalog = pd.concat([p.catalog for p in parts], ignore_index=True).drop_duplicates("item_id", keep="first")
        return cls(events=events, catalog=catalog.reset_index(drop=True), reports=[r for p in parts for r in p.reports])
