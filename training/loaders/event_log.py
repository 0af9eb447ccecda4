"""Event logs (the REES46 layout by default, any other through a :class:`training.mapping.ColumnMapping`) into the
``events`` frame of :mod:`recsys.domain.schema`, with every bad row counted by reason; and an item description from the
log's own columns when there is no product file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.domain.schema import CATALOG_COLUMNS, EVENT_COLUMNS, UNKNOWN, Dataset, DataValidationError, ValidationReport
from training.loaders.files import read_columns
from training.mapping import ColumnMapping, DataMapping

EPOCH_RANGE = (pd.Timestamp("1980-01-01"), pd.Timestamp("2100-01-01"))


def _parse_timestamps(raw: pd.Series, unit: str, label: str) -> pd.Series:
    """UTC-naive datetimes; a value that does not parse is NaT (counted later). When most values do not parse
    in the declared unit, or epoch numbers fall outside 1980..2100, the unit is wrong: that fails the file."""
    column = f"column '{raw.name}' (events.timestamp, timestamp_unit = \"{unit}\")"
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = pd.to_datetime(raw, utc=True)
    elif unit == "iso":
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
    else:
        parsed = pd.to_datetime(pd.to_numeric(raw, errors="coerce"), unit=unit, errors="coerce", utc=True)
    present = raw.notna() & raw.astype("string").str.strip().ne("")
    failed = present & parsed.isna()
    if failed.sum() * 2 > present.sum():
        example = raw[failed].iloc[0]
        raise DataValidationError(f"{label}: {column}: {int(failed.sum()):,} of {int(present.sum()):,} values do "
                                  f"not parse as timestamps in this unit, e.g. {example!r}")
    parsed = parsed.dt.tz_localize(None)
    if unit in ("s", "ms") and parsed.notna().any():
        middle = parsed.dropna().sort_values().iloc[parsed.notna().sum() // 2]
        if not EPOCH_RANGE[0] <= middle <= EPOCH_RANGE[1]:
            raise DataValidationError(f"{label}: {column}: values such as {raw[parsed.notna()].iloc[0]!r} read as "
                                      f"year {middle.year}, outside 1980..2100; check timestamp_unit")
    # beyond what nanoseconds hold (years 1677..2262): not a time, counted like any unparseable value
    parsed = parsed.where((parsed >= pd.Timestamp.min) & (parsed <= pd.Timestamp.max))
    return parsed.astype("datetime64[ns]")


def clean_id(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    text = text.str.replace(r"\.0$", "", regex=True)  # ids read as floats by some exporters
    return text.where(text.str.len() > 0)


def read_event_log(path: str | Path, mapping: ColumnMapping | DataMapping | None = None,
                   known_event_types: set[str] | None = None) -> Dataset:
    """Read an event log (a CSV/TSV/parquet file, a directory of parquet parts or a glob) into events plus a
    catalog derived from its columns (replaced by a ``--catalog`` file in :func:`load_dataset`).

    Rows with an unparseable id, time, price or an unknown event type are counted in the report and skipped.
    """
    mapping = mapping.events if isinstance(mapping, DataMapping) else mapping or ColumnMapping()
    raw = read_columns(path, mapping, "events")
    path = Path(path)
    report = ValidationReport(source=str(path), rows_read=len(raw))

    def column(name: str | None) -> pd.Series | None:
        return raw[name] if name and name in raw.columns else None

    customer = clean_id(raw[mapping.customer_id])
    item = clean_id(raw[mapping.item_id])
    timestamp = _parse_timestamps(raw[mapping.timestamp], mapping.timestamp_unit, str(path))
    event_col = column(mapping.event_type)
    event_type = (event_col.astype("string").str.strip().str.lower() if event_col is not None
                  else pd.Series("purchase", index=raw.index, dtype="string"))
    unmapped_type = pd.Series(False, index=raw.index)
    source_type = event_type  # the log's own names, for the report to name those it skips
    if mapping.types is not None and event_col is not None:
        lookup = {source.strip().lower(): target.strip().lower() for source, target in mapping.types.items()}
        mapped = event_type.map(lookup).astype("string")
        unmapped_type = event_type.notna() & mapped.isna()
        event_type = mapped
    price_col = column(mapping.price)
    price = pd.to_numeric(price_col, errors="coerce") if price_col is not None else pd.Series(np.nan, index=raw.index)
    quantity_col = column(mapping.quantity)
    quantity = (pd.to_numeric(quantity_col, errors="coerce") if quantity_col is not None
                else pd.Series(1.0, index=raw.index))
    session_col = column(mapping.session_id)
    session = (clean_id(session_col) if session_col is not None
               else customer + ":" + timestamp.dt.strftime("%Y-%m-%d"))
    store_col = column(mapping.store_id)
    store = clean_id(store_col) if store_col is not None else pd.Series(pd.NA, index=raw.index, dtype="string")

    checks = {
        "unparseable customer id": customer.isna(),
        "unparseable item id": item.isna(),
        "unparseable timestamp": timestamp.isna(),
        "event type not in the mapping": unmapped_type,
        "missing event type": event_type.isna(),
        "unparseable price": price_col.notna() & price_col.astype("string").str.strip().ne("") & price.isna()
        if price_col is not None else pd.Series(False, index=raw.index),
        "negative price": price < 0,
        "non-positive quantity": ~(quantity > 0),
    }
    if known_event_types is not None:
        checks["unknown event type"] = event_type.notna() & ~event_type.isin(list(known_event_types))
    named = {"event type not in the mapping": source_type, "unknown event type": event_type}
    bad = pd.Series(False, index=raw.index)
    for reason, mask in checks.items():
        mask = mask.fillna(False).astype(bool) & ~bad  # count each bad row once, under its first problem
        report.skip(reason, int(mask.sum()))
        if reason in named and mask.any():
            report.name_values(reason, named[reason][mask].value_counts().to_dict())
        bad |= mask
    session = session.fillna(customer + ":" + timestamp.dt.strftime("%Y-%m-%d"))
    good = ~bad
    events = pd.DataFrame(
        {
            "customer_id": customer[good].astype(str),
            "item_id": item[good].astype(str),
            "session_id": session[good].astype(str),
            "event_type": event_type[good].astype(str),
            "timestamp": timestamp[good],
            "quantity": quantity[good].astype("float64"),
            "price": price[good].where(price[good] > 0).astype("float64"),
            "store_id": store[good],
        }
    )[list(EVENT_COLUMNS)].reset_index(drop=True)
    catalog = catalog_from_log(raw[good], item[good], mapping)
    return Dataset(events=events, catalog=catalog, reports=[report])


def catalog_from_log(raw: pd.DataFrame, item: pd.Series, mapping: ColumnMapping) -> pd.DataFrame:
    """One row per item: its most recent non-empty brand and category in the log."""
    frame = pd.DataFrame({"item_id": item.astype(str)})
    brand = raw[mapping.brand] if mapping.brand and mapping.brand in raw.columns else None
    frame["brand"] = brand.astype("string").str.strip().str.lower() if brand is not None else pd.NA
    category = raw[mapping.category].astype("string") if mapping.category and mapping.category in raw.columns else None
    if mapping.category_fallback and mapping.category_fallback in raw.columns:
        fallback = "id:" + clean_id(raw[mapping.category_fallback]).astype("string")
        category = fallback if category is None else category.where(category.str.len() > 0, fallback)
    frame["category_path"] = category if category is not None else pd.NA
    frame["package_size"] = (raw[mapping.package_size].astype("string")
                             if mapping.package_size and mapping.package_size in raw.columns else pd.NA)
    frame = frame.groupby("item_id", sort=False).last().reset_index()  # groupby.last skips NA per column

    parts = frame["category_path"].fillna(UNKNOWN).str.split(".")
    brand_text = frame["brand"].fillna("unbranded")
    return pd.DataFrame(
        {
            "item_id": frame["item_id"],
            "brand": brand_text.astype(str),
            "manufacturer": brand_text.astype(str),
            "private_label": False,
            "department": parts.str[0].astype(str),
            "category": parts.map(lambda p: ".".join(p[:-1]) if len(p) > 1 else p[0]).astype(str),
            "product_type": frame["category_path"].fillna(UNKNOWN).astype(str),
            "package_size": frame["package_size"].astype(object),
        }
    )[list(CATALOG_COLUMNS)]
