from pathlib import Path

import pandas as pd
import pytest

from recsys.domain.schema import CATALOG_COLUMNS, EVENT_COLUMNS, Dataset, DataValidationError
from training.events import ID_COLUMNS
from training.loaders import read_event_log
from training.mapping import DataMapping


@pytest.mark.realdata
def test_complete_journey_slice_has_the_schema(cj_small: Dataset) -> None:
    events, catalog = cj_small.events, cj_small.catalog
    assert list(events.columns) == list(EVENT_COLUMNS)
    # the contract's columns, then the example mapping's catalog attributes (tests/conftest.py loads them)
    assert list(catalog.columns) == [*CATALOG_COLUMNS, *(f"attribute.{name}" for name in (
        "label", "multipack", "organic", "decaf", "kosher", "sugar_free", "light"))]
    # a product without a product type has no organic value (missing, not "no")
    organic = catalog["attribute.organic"]
    assert organic.dropna().isin(["yes", "no"]).all() and organic.eq("yes").sum() > 100
    assert organic.isna().sum() == catalog["product_type"].eq("UNKNOWN").sum()
    assert catalog["attribute.label"].isin(["national", "private"]).all()
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


def _as_text(events: pd.DataFrame) -> pd.DataFrame:
    """The events with every categorical id as text, missing as None."""
    return events.assign(**{name: events[name].astype(object).where(events[name].notna(), None)
                            for name in ID_COLUMNS})


def test_event_logs_read_ids_as_categoricals_from_csv_and_parquet(synthetic_files: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    mapping = DataMapping.from_toml(synthetic_files["mapping"])
    raw = pd.read_csv(synthetic_files["events"], dtype=str, keep_default_na=False, na_values=[""])
    known_types = set(raw["event_type"])
    # rows the loader must skip and count, and ids it must clean
    raw.loc[0, "user_id"] = " "
    raw.loc[1, "event_time"] = "not a time"
    raw.loc[2, "event_type"] = "teleport"
    raw.loc[3, "user_session"] = None  # falls back to customer + day
    raw.loc[4, "product_id"] = raw.loc[5, "product_id"] + ".0"  # a float's id: the same item
    raw.loc[6, "user_id"] = f" {raw.loc[6, 'user_id']} "
    raw.to_csv(tmp_path / "events.csv", index=False)
    raw.to_parquet(tmp_path / "events.parquet", index=False)
    from_csv = read_event_log(tmp_path / "events.csv", mapping, known_event_types=known_types)
    from_parquet = read_event_log(tmp_path / "events.parquet", mapping, known_event_types=known_types)
    for data in (from_csv, from_parquet):
        assert all(isinstance(data.events[name].dtype, pd.CategoricalDtype) for name in ID_COLUMNS)
        assert data.reports[0].skipped == {"unparseable customer id": 1, "unparseable timestamp": 1,
                                           "unknown event type": 1}
        assert data.reports[0].skipped_values == {"unknown event type": {"teleport": 1}}
        assert data.reports[0].rows_used == len(raw) - 3 == len(data.events)
    pd.testing.assert_frame_equal(_as_text(from_csv.events), _as_text(from_parquet.events))
    pd.testing.assert_frame_equal(from_csv.catalog, from_parquet.catalog)
    events = _as_text(from_csv.events)
    kept = raw.drop(index=[0, 1, 2]).reset_index(drop=True)
    assert events["customer_id"].tolist() == kept["user_id"].str.strip().tolist()
    assert events.loc[1, "item_id"] == events.loc[2, "item_id"] == raw.loc[5, "product_id"]  # rows 4 and 5
    day = pd.Timestamp(events.loc[0, "timestamp"]).strftime("%Y-%m-%d")
    assert events.loc[0, "session_id"] == f"{kept.loc[0, 'user_id']}:{day}"
    assert events["session_id"].iloc[1:].tolist() == kept["user_session"].iloc[1:].tolist()
    assert events["store_id"].tolist() == kept["store_id"].astype(object).where(kept["store_id"].notna(), None).tolist()


def test_event_log_without_a_session_column_makes_customer_day_sessions(rees46_path: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(rees46_path, dtype=str).head(2_000).drop(columns=["user_session"])
    frame.to_parquet(tmp_path / "log.parquet", index=False)
    events = read_event_log(tmp_path / "log.parquet").events
    assert isinstance(events["session_id"].dtype, pd.CategoricalDtype)
    expected = events["customer_id"].astype(str) + ":" + events["timestamp"].dt.strftime("%Y-%m-%d")
    assert (events["session_id"].astype(str) == expected).all()
    assert events["session_id"].nunique() == expected.nunique() < len(events)


def test_synthetic_retailer_file_reads_back_its_events(synthetic: Dataset, synthetic_files: dict[str, Path]) -> None:
    data = read_event_log(synthetic_files["events"], DataMapping.from_toml(synthetic_files["mapping"]))
    assert data.reports[0].skipped == {} and data.reports[0].rows_used == len(synthetic.events)
    for name in ("customer_id", "item_id", "session_id", "event_type"):
        assert isinstance(data.events[name].dtype, pd.CategoricalDtype)
        assert data.events[name].astype(str).tolist() == synthetic.events[name].astype(str).tolist()
