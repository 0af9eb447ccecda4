"""``recsys validate``: a data set checked as a training would check it, without training.

The data is read by the loaders a training reads it with (:func:`training.loaders.load_dataset`) and its events go
through the trainer's own preparation (:func:`training.events.prepare_events`), so every refusal (a missing column,
a file that cannot be read, no usable events) and every skipped row is exactly what ``recsys train`` would meet. What
this module adds is the report: the span and mix of the usable events, how far the catalog describes them, how many
package sizes parse, and the customers, stores and items a model would be built on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from recsys.domain.config import TrainConfig
from recsys.domain.schema import Dataset, ValidationReport
from recsys.domain.sizes import parse_package_sizes
from training.aggregates import size_parse_rate
from training.events import prepare_events

#: the skip reason of an event whose item the catalog does not describe (the loaders' and the trainer's)
NOT_IN_CATALOG = "item not in catalog"


@dataclass
class AssortmentSummary:
    """The ``--assortment`` file as read: its rows, its stores, and how many rows name an item of the catalog."""

    rows: int
    stores: int
    rows_in_catalog: int


@dataclass
class DataReport:
    """What a training would be built on. ``sources``: the loaders' reports, then the trainer's own ("trainer")."""

    sources: list[ValidationReport]
    data_start: pd.Timestamp
    data_end: pd.Timestamp
    events: int  # usable events
    event_types: dict[str, int]  # usable events per type, most frequent first
    customers: int
    stores: int
    items_with_events: int
    catalog_items: int
    valid_events: int  # event rows the loaders found valid, before the catalog check
    not_in_catalog: int  # of those, the rows whose item the catalog does not describe
    size_parse_rate: float | None  # None: no catalog item has a package size
    assortment: AssortmentSummary | None = None

    @property
    def catalog_coverage(self) -> float:
        """The share of the valid event rows whose item the catalog describes."""
        return 1.0 - self.not_in_catalog / self.valid_events if self.valid_events else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "sources": [source.as_dict() for source in self.sources],
            "data_span": {"start": self.data_start.isoformat(), "end": self.data_end.isoformat()},
            "counts": {"events": self.events, "customers": self.customers, "stores": self.stores,
                       "items_with_events": self.items_with_events, "catalog_items": self.catalog_items},
            "event_types": self.event_types,
            "catalog_coverage": {"share": round(self.catalog_coverage, 6), "valid_events": self.valid_events,
                                 "not_in_catalog": self.not_in_catalog},
            "size_parse_rate": None if self.size_parse_rate is None else round(self.size_parse_rate, 6),
            "assortment": None if self.assortment is None else vars(self.assortment),
        }


def check_data(dataset: Dataset, config: TrainConfig | None = None, train_until: datetime | None = None,
               assortment: pd.DataFrame | None = None) -> DataReport:
    """The report of ``dataset`` as ``recsys train`` with ``config`` and ``train_until`` would read it; raises the
    trainer's :class:`recsys.domain.schema.DataValidationError` where it would refuse the data. ``assortment``: the
    ``--assortment`` file as :func:`training.assortment.read_assortment` read it."""
    trainer = ValidationReport(source="trainer")
    events = prepare_events(dataset, config or TrainConfig(), train_until, trainer)
    catalog = dataset.catalog.drop_duplicates("item_id").reset_index(drop=True)
    # the loaders drop a catalog's unknown items before the trainer sees the events: count them back in
    dropped = sum(report.skipped.get(NOT_IN_CATALOG, 0) for report in dataset.reports)
    described = int(dataset.events["item_id"].isin(catalog["item_id"]).sum())
    sizes = pd.concat([catalog[["package_size"]], parse_package_sizes(catalog["package_size"])], axis=1)
    event_types = events["event_type"].value_counts()
    return DataReport(
        sources=[*dataset.reports, trainer], data_start=events["timestamp"].min(), data_end=events["timestamp"].max(),
        events=len(events), event_types={str(name): int(n) for name, n in event_types.items() if n > 0},
        customers=int(events["customer_id"].nunique()), stores=int(events["store_id"].nunique()),
        items_with_events=int(events["item_id"].nunique()), catalog_items=len(catalog),
        valid_events=len(dataset.events) + dropped, not_in_catalog=len(dataset.events) + dropped - described,
        size_parse_rate=size_parse_rate(sizes),
        assortment=None if assortment is None else AssortmentSummary(
            rows=len(assortment), stores=int(assortment["store_id"].nunique()),
            rows_in_catalog=int(assortment["item_id"].isin(catalog["item_id"]).sum())))
