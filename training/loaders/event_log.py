"""Event logs (the REES46 layout by default, any other through a :class:`training.mapping.ColumnMapping`) into the
``events`` frame of :mod:`recsys.domain.schema`, with every bad row counted by reason; and an item description from the
log's own columns when there is no product file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.domain.schema import CATALOG_COLUMNS, EVENT_COLUMNS, UNKNOWN, Dataset, DataValidationError, ValidationReport
from training.events import categorical
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
    unparsed = raw.notna() & parsed.isna()
    failed = unparsed.copy()
    if unparsed.any():  # a blank text is missing, not a failure: only the values that did not parse are read as text
        failed[unparsed] = raw[unparsed].astype("string").str.strip().ne("").to_numpy()
    present = int(raw.notna().sum()) - int((unparsed & ~failed).sum())
    if failed.sum() * 2 > present:
        example = raw[failed].iloc[0]
        raise DataValidationError(f"{label}: {column}: {int(failed.sum()):,} of {present:,} values do "
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


def as_categorical(values: pd.Series) -> pd.Series:
    """``values`` as a categorical; one the reader already made (parquet's dictionary text, CSV) as it is."""
    return values if isinstance(values.dtype, pd.CategoricalDtype) else values.astype("category")


def relabel_categories(ids: pd.Series, relabel: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """``relabel`` (text in, text out, missing for none) run on the distinct values of ``ids`` only, and every row
    recoded through it, so the work and memory go with the distinct ids, not the events: labels that come out equal
    merge (``7`` and ``7.0``), a missing label makes its rows missing. The result is categorical."""
    ids = as_categorical(ids)
    codes = ids.cat.codes.to_numpy()
    label_codes, labels = pd.factorize(relabel(pd.Series(ids.cat.categories)))  # a missing label: code -1
    recode = np.append(label_codes, -1).astype(codes.dtype)  # a missing row (code -1) stays missing
    return pd.Series(pd.Categorical.from_codes(recode[codes], categories=pd.Index(labels, dtype=str)),
                     index=ids.index, name=ids.name)


def clean_id_categories(ids: pd.Series) -> pd.Series:
    """:func:`clean_id` as a categorical, cleaned once per distinct id."""
    return relabel_categories(ids, clean_id)


def _event_names(names: pd.Series) -> pd.Series:
    return names.astype("string").str.strip().str.lower()


def _codes_in(ids: pd.Series, categories: pd.Index) -> np.ndarray:
    """The codes of a categorical's rows in another set of ``categories`` that holds all of its own."""
    return np.append(categories.get_indexer(ids.cat.categories), -1)[ids.cat.codes.to_numpy()]


def _customer_day_sessions(customer: pd.Series, timestamp: pd.Series) -> pd.Series:
    """A session per customer and day, ``<customer>:<YYYY-MM-DD>``, as a categorical whose label is written once per
    session, not per row; a row without a customer or a time has none."""
    days = timestamp.to_numpy().astype("datetime64[D]").astype(np.int64)
    customers = customer.cat.codes.to_numpy().astype(np.int64)
    known = (customers >= 0) & timestamp.notna().to_numpy()
    codes = np.full(len(customer), -1, dtype=np.int64)
    if not known.any():
        return pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index([], dtype=str)), index=customer.index)
    first_day = days[known].min()
    span = int(days[known].max() - first_day + 1)
    codes[known], keys = pd.factorize(customers[known] * span + (days[known] - first_day))
    dates = np.datetime_as_string((keys % span + first_day).astype("datetime64[D]"), unit="D")
    labels = pd.Index(customer.cat.categories[keys // span], dtype=str) + ":" + pd.Index(dates, dtype=str)
    return pd.Series(pd.Categorical.from_codes(codes, categories=labels), index=customer.index)


def _fill_missing(ids: pd.Series, fallback: pd.Series) -> pd.Series:
    """Categorical ``ids`` with each missing one taken from the categorical ``fallback``."""
    categories = ids.cat.categories.union(fallback.cat.categories, sort=False)
    own, other = _codes_in(ids, categories), _codes_in(fallback, categories)
    return pd.Series(pd.Categorical.from_codes(np.where(own >= 0, own, other), categories=categories),
                     index=ids.index, name=ids.name)


def _constant(value: str | None, index: pd.Index) -> pd.Series:
    """A categorical column of one ``value`` (None: all missing)."""
    categories = pd.Index([] if value is None else [value], dtype=str)
    codes = np.full(len(index), -1 if value is None else 0, dtype=np.int8)
    return pd.Series(pd.Categorical.from_codes(codes, categories=categories), index=index)


def read_event_log(path: str | Path, mapping: ColumnMapping | DataMapping | None = None,
                   known_event_types: set[str] | None = None) -> Dataset:
    """Read an event log (a CSV/TSV/parquet file, a directory of parquet parts or a glob) into events plus a
    catalog derived from its columns (replaced by a ``--catalog`` file in :func:`load_dataset`).

    Rows with an unparseable id, time, price or an unknown event type are counted in the report and skipped.
    """
    mapping = mapping.events if isinstance(mapping, DataMapping) else mapping or ColumnMapping()
    # the ids as categoricals from the start: a code per row, each id's text once (a lake of millions of events
    # would otherwise cost a Python string per id and row)
    id_columns = [mapping.customer_id, mapping.item_id, mapping.session_id, mapping.store_id, mapping.event_type]
    raw = read_columns(path, mapping, "events", categorical=[name for name in id_columns if name])
    path = Path(path)
    report = ValidationReport(source=str(path), rows_read=len(raw))

    def column(name: str | None) -> pd.Series | None:
        return raw[name] if name and name in raw.columns else None

    customer = clean_id_categories(raw[mapping.customer_id])
    item = clean_id_categories(raw[mapping.item_id])
    timestamp = _parse_timestamps(raw[mapping.timestamp], mapping.timestamp_unit, str(path))
    event_col = column(mapping.event_type)
    event_type = (relabel_categories(event_col, _event_names) if event_col is not None
                  else _constant("purchase", raw.index))
    unmapped_type = pd.Series(False, index=raw.index)
    source_type = event_type  # the log's own names, for the report to name those it skips
    if mapping.types is not None and event_col is not None:
        lookup = {source.strip().lower(): target.strip().lower() for source, target in mapping.types.items()}
        mapped = relabel_categories(event_type, lambda names: names.map(lookup).astype("string"))
        unmapped_type = event_type.notna() & mapped.isna()
        event_type = mapped
    price_col = column(mapping.price)
    price = pd.to_numeric(price_col, errors="coerce") if price_col is not None else pd.Series(np.nan, index=raw.index)
    unparseable_price = pd.Series(False, index=raw.index)
    if price_col is not None:  # a blank price is no price; only the values that did not parse are read as text
        unparseable_price = price_col.notna() & price.isna()
        if unparseable_price.any():
            unparseable_price[unparseable_price] = (
                price_col[unparseable_price].astype("string").str.strip().ne("").to_numpy())
    quantity_col = column(mapping.quantity)
    quantity = (pd.to_numeric(quantity_col, errors="coerce") if quantity_col is not None
                else pd.Series(1.0, index=raw.index))
    session_col = column(mapping.session_id)
    store_col = column(mapping.store_id)
    store = clean_id_categories(store_col) if store_col is not None else _constant(None, raw.index)

    checks = {
        "unparseable customer id": customer.isna(),
        "unparseable item id": item.isna(),
        "unparseable timestamp": timestamp.isna(),
        "event type not in the mapping": unmapped_type,
        "missing event type": event_type.isna(),
        "unparseable price": unparseable_price,
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
    good = ~bad

    def kept(ids: pd.Series) -> pd.Series:  # the good rows' ids, without the categories of skipped rows only
        return ids[good].cat.remove_unused_categories() if bad.any() else ids

    # categories in sorted order: the same frame whatever the file's order (CSV, parquet parts), and the order the
    # trainer wants (training.events.categorical)

    # a session is customer + day where the log has no session id (no column, or an empty value)
    session = kept(clean_id_categories(session_col)) if session_col is not None else None
    if session is None or session.isna().any():
        by_day = _customer_day_sessions(kept(customer), timestamp[good])
        session = by_day if session is None else _fill_missing(session, by_day)
    events = pd.DataFrame(
        {
            "customer_id": categorical(kept(customer)),
            "item_id": categorical(kept(item)),
            "session_id": categorical(session),
            "event_type": categorical(kept(event_type)),
            "timestamp": timestamp[good],
            "quantity": quantity[good].astype("float64"),
            "price": price[good].where(price[good] > 0).astype("float64"),
            "store_id": categorical(kept(store)),
        }
    )[list(EVENT_COLUMNS)].reset_index(drop=True)
    described = [name for name in (mapping.brand, mapping.category, mapping.category_fallback, mapping.package_size)
                 if name and name in raw.columns]
    catalog = catalog_from_log(raw.loc[good, described], kept(item), mapping)
    return Dataset(events=events, catalog=catalog, reports=[report])


def catalog_from_log(raw: pd.DataFrame, item: pd.Series, mapping: ColumnMapping) -> pd.DataFrame:
    """One row per item: its most recent non-empty brand and category in the log. ``item``: text ids, or a
    categorical of them (grouped by code, its text written once per item)."""
    frame = pd.DataFrame({"item_id": item if isinstance(item.dtype, pd.CategoricalDtype) else item.astype(str)})
    brand = raw[mapping.brand] if mapping.brand and mapping.brand in raw.columns else None
    frame["brand"] = brand.astype("string").str.strip().str.lower() if brand is not None else pd.NA
    category = raw[mapping.category].astype("string") if mapping.category and mapping.category in raw.columns else None
    if mapping.category_fallback and mapping.category_fallback in raw.columns:
        fallback = "id:" + clean_id(raw[mapping.category_fallback]).astype("string")
        category = fallback if category is None else category.where(category.str.len() > 0, fallback)
    frame["category_path"] = category if category is not None else pd.NA
    frame["package_size"] = (raw[mapping.package_size].astype("string")
                             if mapping.package_size and mapping.package_size in raw.columns else pd.NA)
    frame = frame.groupby("item_id", sort=False, observed=True).last().reset_index()  # last skips NA per column

    parts = frame["category_path"].fillna(UNKNOWN).str.split(".")
    brand_text = frame["brand"].fillna("unbranded")
    return pd.DataFrame(
        {
            "item_id": frame["item_id"].astype(str),
            "brand": brand_text.astype(str),
            "manufacturer": brand_text.astype(str),
            "private_label": False,
            "department": parts.str[0].astype(str),
            "category": parts.map(lambda p: ".".join(p[:-1]) if len(p) > 1 else p[0]).astype(str),
            "product_type": frame["category_path"].fillna(UNKNOWN).astype(str),
            "package_size": frame["package_size"].astype(object),
        }
    )[list(CATALOG_COLUMNS)]
