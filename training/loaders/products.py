"""The ``--catalog`` product file (columns through a :class:`training.mapping.CatalogColumns`) into the ``catalog``
frame of :mod:`recsys.domain.schema`, and the join of an event log's events with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.domain.schema import (
    LIST_PRICE,
    UNKNOWN,
    Dataset,
    DataValidationError,
    ValidationReport,
    catalog_columns,
)
from training.attributes import derive_attributes
from training.loaders.event_log import clean_id
from training.loaders.files import ColumnReader, read_columns
from training.mapping import CatalogColumns, DataMapping

_TRUE = frozenset({"true", "1", "1.0", "yes", "y", "t"})


def read_catalog_report(path: str | Path, columns: CatalogColumns, read: ColumnReader | None = None
                        ) -> tuple[pd.DataFrame, ValidationReport]:
    """The catalog at ``path`` in the canonical columns, and its report. ``read``: how its columns are read (the
    Spark engine reads a URL with Spark); by default :func:`read_columns`."""
    raw = (read or read_columns)(path, columns, "catalog")
    report = ValidationReport(source=f"catalog {path}", rows_read=len(raw))

    def text(key: str, explicit_only: bool = False) -> pd.Series | None:
        name = getattr(columns, key)
        if not name or name not in raw.columns or (explicit_only and key not in columns.model_fields_set):
            return None
        values = raw[name].astype("string").str.strip()
        return values.where(values.str.len() > 0)

    item_id = clean_id(raw[columns.item_id])
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
    for name, values in derive_attributes(raw, columns.attributes, f"catalog {path}").items():
        catalog[name] = values
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


def join_catalog(part: Dataset, catalog: pd.DataFrame) -> Dataset:
    """Events whose item is in the catalog, described by it; the rest are counted and skipped. The catalog's
    list price fills events without a price."""
    events = part.events
    known = events["item_id"].isin(catalog["item_id"])
    part.reports[0].skip("item not in catalog", int((~known).sum()))
    events = events[known].reset_index(drop=True)
    list_price = catalog["price"].where(catalog["price"] > 0)
    events["price"] = events["price"].fillna(events["item_id"].map(list_price.set_axis(catalog["item_id"])))
    described = catalog[catalog_columns(catalog)].assign(**{LIST_PRICE: list_price})
    return Dataset(events=events, catalog=described, reports=part.reports)
