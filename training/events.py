"""Event preparation: the usable events of a data set (known types, items in the catalog, no clock errors, nothing
after ``--train-until``, no duplicate rows; every skipped row counted by reason) as a compact frame, and their
weights."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from recsys.domain.config import TrainConfig
from recsys.domain.schema import Dataset, DataValidationError, ValidationReport

#: id columns the trainer holds as categoricals: an integer code per event instead of a string (about a third of
#: the memory of the string frame; the trainer's peak memory grows with the events, so this sets how far it goes)
ID_COLUMNS = ("customer_id", "item_id", "session_id", "event_type", "store_id")


def prepare_events(dataset: Dataset, config: TrainConfig, train_until: datetime | None,
                   report: ValidationReport) -> pd.DataFrame:
    """The usable events, as a compact frame: id columns categorical, rows in their original order."""
    events = dataset.events.assign(**{column: categorical(dataset.events[column]) for column in ID_COLUMNS})
    report.rows_read = len(events)
    unknown_type = ~events["event_type"].isin(list(config.event_weights))
    report.skip("unknown event type", int(unknown_type.sum()))
    if unknown_type.any():
        # a missing type is not a name (value_counts leaves it out; name_values, the unused categories' zeros)
        report.name_values("unknown event type", events["event_type"][unknown_type].value_counts().to_dict())
    unknown_item = ~events["item_id"].isin(dataset.catalog["item_id"])
    report.skip("item not in catalog", int((unknown_item & ~unknown_type).sum()))
    keep = ~unknown_type & ~unknown_item
    # a clock error at the source, not an event: it would also make every real event look old
    future = events["timestamp"] > pd.Timestamp.now() + pd.Timedelta(days=1)
    report.skip("timestamp in the future", int((future & keep).sum()))
    keep &= ~future
    if train_until is not None:
        later = events["timestamp"] > pd.Timestamp(train_until)
        report.skip("after --train-until", int((later & keep).sum()))
        keep &= ~later
    copies = duplicated(events)
    report.skip("duplicate row", int((copies & keep).sum()))
    keep &= ~copies
    if not keep.all():
        events = events[keep]
    if events.empty:
        raise no_usable_events(report)
    return events


def event_weights(events: pd.DataFrame, config: TrainConfig) -> tuple[pd.Timestamp, np.ndarray, np.ndarray]:
    """The data's end and each event's weight: its type's weight, halved every ``recency_half_life_days`` before
    the end; and the same with the short (trend) half-life."""
    data_end = events["timestamp"].max()
    age_days = (data_end - events["timestamp"]).dt.total_seconds().to_numpy() / 86400.0
    event_weight = events["event_type"].map(config.event_weights).to_numpy(np.float64)
    return (data_end, event_weight * np.power(0.5, age_days / config.recency_half_life_days),
            event_weight * np.power(0.5, age_days / config.trend_half_life_days))


def no_usable_events(report: ValidationReport) -> DataValidationError:
    """The error of data whose every row was skipped, with the skip counts (every engine raises this one)."""
    return DataValidationError(
        "no usable events: every row was skipped (" + ", ".join(f"{k}: {v}" for k, v in report.skipped.items())
        + "); check the data, the column mapping and --train-until")


def categorical(ids: pd.Series) -> pd.Series:
    """``ids`` as a categorical with sorted categories, so that its codes sort like the ids themselves."""
    ids = ids.astype("category")
    categories = ids.cat.categories
    return ids if categories.is_monotonic_increasing else ids.cat.reorder_categories(categories.sort_values())


def duplicated(events: pd.DataFrame) -> np.ndarray:
    """``events.duplicated()`` without its per-column codes for every row: rows are hashed (8 bytes each) and
    compared column by column only where a hash repeats, so the answer is exact."""
    hashes = pd.util.hash_pandas_object(events, index=False)
    suspects = hashes.duplicated(keep=False).to_numpy()
    duplicated = np.zeros(len(events), dtype=bool)
    if suspects.any():
        duplicated[suspects] = events[suspects].duplicated().to_numpy()
    return duplicated
