from pathlib import Path

import pandas as pd
import pytest

from recsys.domain.schema import CATALOG_COLUMNS, EVENT_COLUMNS, Dataset, DataValidationError
from training.loaders import read_event_log


@pytest.mark.realdata
def test_complete_journey_slice_has_the_schema(cj_small: Dataset) -> None:
    events, catalog = cj_small.events, cj_small.catalog
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert list(catalog.columns) == list(CATALOG_COLUMNS)
    assert events["customer_id"].nunique() == 300
    assert (events["event_type"] == "purchase").all()
    assert events["item_id"].map(type).eq(str).all() and events["customer_id"].map(type).eq(str).all()
    assert (events["price"].dropna() > 0).all()
    assert len(catalog) > 90_000 and catalog["item_id"].is_unique
    # the data set only says National/Private, so brands are manufacturers plus the private label
    assert catalog.loc[catalog["private_label"], "brand"].eq("Private label").all()
    assert catalog["brand"].nunique() > 1000
    report = cj_small.reports[0]
    assert report.rows_used == len(events)
    assert report.skipped["non-positive quantity"] > 0


def test_reads_the_rees46_log(rees46_path: Path) -> None:
    data = read_event_log(rees46_path, known_event_types={"view", "cart", "purchase"})
    assert len(data.events) == 17_435
    assert set(data.events["event_type"]) == {"view", "cart", "purchase"}
    assert data.events["session_id"].nunique() > 1000
    assert data.events["timestamp"].min() == pd.Timestamp("2019-10-01 00:00:00")
    catalog = data.catalog.set_index("item_id")
    assert catalog.index.is_unique and set(data.events["item_id"]) == set(catalog.index)
    assert catalog.loc["3900821", "product_type"] == "appliances.environment.water_heater"
    assert catalog.loc["3900821", "category"] == "appliances.environment"
    assert catalog.loc["3900821", "brand"] == "aqua"
    # an item without category_code falls back to its category id
    assert catalog.loc["44600062", "product_type"].startswith("id:")


def test_reads_parquet_too(rees46_path: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(rees46_path, dtype=str).head(500)
    frame.to_parquet(tmp_path / "log.parquet")
    data = read_event_log(tmp_path / "log.parquet")
    assert len(data.events) == 500


def test_missing_columns_are_named(rees46_path: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(rees46_path, dtype=str).head(50).drop(columns=["user_id", "event_time"])
    frame.to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(DataValidationError, match="user_id, event_time"):
        read_event_log(tmp_path / "log.csv")


def test_bad_rows_are_counted_not_silently_dropped(rees46_path: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(rees46_path, dtype=str).head(200)
    frame.loc[0:4, "event_time"] = "not a time"
    frame.loc[5:7, "product_id"] = ""
    frame.loc[8:9, "price"] = "abc"
    frame.loc[10, "event_type"] = "teleport"
    frame.to_csv(tmp_path / "log.csv", index=False)
    data = read_event_log(tmp_path / "log.csv", known_event_types={"view", "cart", "purchase"})
    skipped = data.reports[0].skipped
    assert skipped == {"unparseable timestamp": 5, "unparseable item id": 3, "unparseable price": 2,
                       "unknown event type": 1}
    assert len(data.events) == 200 - 11 == data.reports[0].rows_used


def test_unreadable_and_unknown_formats_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="not found"):
        read_event_log(tmp_path / "missing.csv")
    (tmp_path / "log.json").write_text("{}")
    with pytest.raises(DataValidationError, match="unsupported"):
        read_event_log(tmp_path / "log.json")
