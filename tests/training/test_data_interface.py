"""A retailer's own data in: ``--mapping``, ``--catalog`` and file/directory/glob sources, through the CLI and
the Python API, on files derived from the real REES46 sample (renamed to a RetailRocket-like layout)."""

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recsys import SubstituteEngine
from recsys.cli import app
from recsys.domain.schema import DataValidationError
from recsys.model.artifact import CURRENT, read_manifest
from training.loaders import ColumnMapping, DataMapping, load_dataset, read_catalog
from training.mapping import CatalogColumns

MAPPINGS = Path(__file__).resolve().parents[2] / "docs" / "mappings"
EVENT_NAMES = {"view": "view", "cart": "addtocart", "purchase": "transaction"}
SIZES = ["500 ml", "1 L", "250 g", "6 ct"]
COLD = ["COLD-1", "COLD-2"]
COLD_SIZE = "750 ml"


@pytest.fixture(scope="module")
def retail(rees46_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The REES46 sample as a RetailRocket-like export: events.csv, events/date=.../part-N.parquet and
    products.csv (one row per item plus catalog-only items), and a config without the ranker."""
    root = tmp_path_factory.mktemp("retail")
    raw = pd.read_csv(rees46_path, dtype=str, keep_default_na=False)
    times = pd.to_datetime(raw["event_time"], utc=True)
    events = pd.DataFrame({
        "timestamp": (times - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(milliseconds=1),
        "visitorid": raw["user_id"],
        "event": raw["event_type"].map(EVENT_NAMES),
        "itemid": raw["product_id"],
        "session": raw["user_session"],
        "shop": "shop-" + (raw["user_id"].astype(np.int64) % 3).astype(str),
        "price": raw["price"],
    })
    events.to_csv(root / "events.csv", index=False)
    typed = events.assign(visitorid=events["visitorid"].astype(np.int64), itemid=events["itemid"].astype(np.int64),
                          price=pd.to_numeric(events["price"]))
    for day, frame in typed.groupby(times.dt.strftime("%Y-%m-%d")):
        folder = root / "events" / f"date={day}"
        folder.mkdir(parents=True)
        half = len(frame) // 2
        for n, part in enumerate((frame.iloc[:half], frame.iloc[half:])):
            part.to_parquet(folder / f"part-{n}.parquet", index=False)
    (root / "events" / "_SUCCESS").write_text("")

    items = raw.assign(price=pd.to_numeric(raw["price"])).groupby("product_id", sort=True).agg(
        brand=("brand", "last"), code=("category_code", "last"), cid=("category_id", "last"), price=("price", "median"))
    catalog = pd.DataFrame({
        "sku": items.index,
        "brand_name": items["brand"].where(items["brand"].ne(""), "our store"),
        "category_path": items["code"].str.replace(".", "/").where(items["code"].ne(""), "id:" + items["cid"]),
        "size": [SIZES[n % len(SIZES)] for n in range(len(items))],
        "list_price": items["price"].round(2),
        "own_brand": np.where(items["brand"].eq(""), "yes", "no"),
    })
    popular = raw["product_id"].value_counts().index[0]
    group = catalog.set_index("sku").loc[popular]
    cold = pd.DataFrame({"sku": COLD, "brand_name": group["brand_name"], "category_path": group["category_path"],
                         "size": COLD_SIZE, "list_price": group["list_price"], "own_brand": "no"})
    pd.concat([catalog, cold]).to_csv(root / "products.csv", index=False)
    (root / "cfg.json").write_text('{"ranker": {"enabled": false}}')
    return {"root": root, "events.csv": root / "events.csv", "events": root / "events",
            "products": root / "products.csv", "cfg": root / "cfg.json", "popular": popular,
            "cold_price": float(group["list_price"])}


def _train(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", *map(str, args), "--no-progress"])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def rees46_counts(rees46_path: Path, retail: dict[str, Any]) -> dict[str, int]:
    out = retail["root"] / "models-rees46"
    code, output = _train("--data", rees46_path, "--out", out, "--config", retail["cfg"])
    assert code == 0, output
    return read_manifest(out / CURRENT).counts


@pytest.fixture(scope="module")
def mapped_model(retail: dict[str, Any]) -> Path:
    """The RetailRocket-like CSV with its product file, trained through the CLI with the shipped mapping."""
    out = retail["root"] / "models-mapped"
    code, output = _train("--data", retail["events.csv"], "--catalog", retail["products"],
                          "--mapping", MAPPINGS / "retailrocket.toml", "--out", out, "--config", retail["cfg"])
    assert code == 0, output
    assert Path(output.strip().splitlines()[-1]).resolve() == (out / CURRENT).resolve()
    return out / CURRENT


def test_mapped_log_with_catalog_trains_with_the_same_event_counts(mapped_model: Path,
                                                                   rees46_counts: dict[str, int]) -> None:
    counts = read_manifest(mapped_model).counts
    assert counts["events"] == rees46_counts["events"] > 15_000
    assert counts["customers"] == rees46_counts["customers"]
    assert counts["items"] == rees46_counts["items"] + len(COLD)  # plus the catalog-only items
    assert counts["stores"] == 3


def test_catalog_sizes_stores_and_private_label_reach_the_model(mapped_model: Path, retail: dict[str, Any]
                                                                 ) -> None:
    catalog = pd.read_csv(retail["products"], dtype=str).set_index("sku")
    engine = SubstituteEngine.load(mapped_model)
    assert set(engine.model.stores) == {"shop-0", "shop-1", "shop-2"}
    own = catalog.index[catalog["own_brand"].eq("yes")][0]
    national = catalog.index[catalog["own_brand"].eq("no")][0]
    for sku in (own, national):
        info = engine.item_info(sku)
        assert info.package_size == catalog.loc[sku, "size"]
        assert info.brand == catalog.loc[sku, "brand_name"]
        assert info.product_type == catalog.loc[sku, "category_path"]
    assert engine.item_info(own).private_label and not engine.item_info(national).private_label
    assert engine.item_info("3900821").product_type == "appliances/environment/water_heater"
    assert engine.item_info("3900821").department == "appliances"


def test_catalog_only_items_are_cold_start_items(mapped_model: Path, retail: dict[str, Any]) -> None:
    engine = SubstituteEngine.load(mapped_model)
    popular = retail["popular"]
    for sku in COLD:
        info = engine.item_info(sku)
        assert info.package_size == COLD_SIZE
        assert info.price is not None and info.price == pytest.approx(retail["cold_price"])  # the list price
        assert info.product_type == engine.item_info(popular).product_type
        assert engine.substitutes(sku).metadata_based
    assert not engine.substitutes(popular).metadata_based


def test_hive_partitioned_parquet_directory_and_glob_give_the_same_events(retail: dict[str, Any],
                                                                         rees46_counts: dict[str, int]) -> None:
    out = retail["root"] / "models-parquet"
    code, output = _train("--data", retail["events"], "--mapping", MAPPINGS / "retailrocket.toml",
                          "--catalog", retail["products"], "--out", out, "--config", retail["cfg"])
    assert code == 0, output
    assert read_manifest(out / CURRENT).counts["events"] == rees46_counts["events"]
    mapping = DataMapping.from_toml(MAPPINGS / "retailrocket.toml")
    from_dir = load_dataset([str(retail["events"])], mapping=mapping)
    from_glob = load_dataset([str(retail["events"] / "date=*" / "*.parquet")], mapping=mapping)
    from_csv = load_dataset([str(retail["events.csv"])], mapping=mapping)
    columns = ["customer_id", "item_id", "session_id", "event_type", "timestamp", "store_id"]
    for data in (from_dir, from_glob):
        assert len(data.events) == len(from_csv.events) == 17_435
        pd.testing.assert_frame_equal(data.events[columns], from_csv.events[columns], check_dtype=False)
        assert data.reports[0].rows_read == 17_435


def test_parquet_is_read_column_pruned(retail: dict[str, Any]) -> None:
    from training.loaders.files import read_columns

    events = ColumnMapping(customer_id="visitorid", item_id="itemid", timestamp="timestamp", timestamp_unit="ms",
                           event_type="event")
    raw = read_columns(retail["events"], events, "events")
    assert set(raw.columns) == {"visitorid", "itemid", "timestamp", "event", "price"}  # not session, shop, date
    data = load_dataset([str(retail["events"])], mapping=DataMapping(events=events))  # as a Python object
    assert len(data.events) == 17_435 and data.events["session_id"].str.contains(":2019-10-01").all()


def test_event_type_mapping_counts_unlisted_names(retail: dict[str, Any], tmp_path: Path) -> None:
    mapping = DataMapping.from_toml(MAPPINGS / "retailrocket.toml")
    mapping.events.types = {"transaction": "purchase", "addtocart": "cart"}  # views unlisted
    data = load_dataset([str(retail["events.csv"])], mapping=mapping)
    views = int(pd.read_csv(retail["events.csv"], usecols=["event"])["event"].eq("view").sum())
    assert data.reports[0].skipped["event type not in the mapping"] == views > 0
    assert set(data.events["event_type"]) == {"purchase", "cart"}


def test_events_for_items_missing_from_the_catalog_are_counted(retail: dict[str, Any], tmp_path: Path) -> None:
    products = pd.read_csv(retail["products"], dtype=str)
    events = pd.read_csv(retail["events.csv"], dtype=str)
    dropped = products["sku"].iloc[:20]
    products[~products["sku"].isin(dropped)].to_csv(tmp_path / "products.csv", index=False)
    data = load_dataset([str(retail["events.csv"])], mapping=DataMapping.from_toml(MAPPINGS / "retailrocket.toml"),
                        catalog=tmp_path / "products.csv")
    report = data.reports[-1]
    assert report.skipped["item not in catalog"] == int(events["itemid"].isin(dropped).sum()) > 0
    assert len(data.events) == report.rows_used
    assert set(data.catalog["item_id"]) == set(products["sku"]) - set(dropped)


def test_shipped_rees46_mapping_is_the_default_layout(rees46_path: Path) -> None:
    mapping = DataMapping.from_toml(MAPPINGS / "rees46.toml")
    assert mapping.events.model_dump(exclude={"types"}) == ColumnMapping().model_dump(exclude={"types"})
    mapped = load_dataset([str(rees46_path)], mapping=mapping)
    default = load_dataset([str(rees46_path)])
    assert len(mapped.events) == len(default.events) == 17_435
    pd.testing.assert_frame_equal(mapped.events, default.events)
    pd.testing.assert_frame_equal(mapped.catalog, default.catalog)


def test_catalog_columns_flat_layout_and_flags(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text("id,dept,group,flag,pack\n1,dairy,cheese,Yes,8 OZ\n2,dairy,cheese,0,\n"
                                    ",dairy,cheese,1,\n1,x,y,no,\n")
    catalog = read_catalog(tmp_path / "c.csv", CatalogColumns(item_id="id", department="dept", category="group",
                                                               private_label="flag", package_size="pack"))
    assert list(catalog["item_id"]) == ["1", "2"]  # no id: dropped; a repeated id: the first kept
    assert list(catalog["private_label"]) == [True, False]
    assert list(catalog["product_type"]) == ["cheese", "cheese"] and catalog["package_size"].iloc[0] == "8 OZ"


# -- bad input: exit 2, one line naming the file, the column and the problem, no model ----------------------

def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _fails(out: Path, *args: str | Path) -> str:
    code, output = _train(*args, "--out", out)
    assert code == 2, output
    assert "Traceback" not in output
    error = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error) == 1, output
    assert not os.path.exists(out / CURRENT) and not (out.exists() and any(out.iterdir()))
    return error[0]


def test_mapping_key_naming_a_missing_column(retail: dict[str, Any], tmp_path: Path) -> None:
    mapping = _write(tmp_path / "m.toml", '[events]\ncustomer_id = "visitor"\nitem_id = "itemid"\n'
                                          'timestamp = "timestamp"\ntimestamp_unit = "ms"\nstore_id = "store"\n')
    error = _fails(tmp_path / "out", "--data", retail["events.csv"], "--mapping", mapping)
    assert f"{retail['events.csv']}: missing required column(s) visitor, store" in error
    assert "events.customer_id, events.store_id" in error and "found timestamp, visitorid" in error


def test_unknown_mapping_key(retail: dict[str, Any], tmp_path: Path) -> None:
    mapping = _write(tmp_path / "m.toml", '[events]\nvisitor_id = "visitorid"\n')
    error = _fails(tmp_path / "out", "--data", retail["events.csv"], "--mapping", mapping)
    assert f"mapping {mapping}: unknown key 'events.visitor_id'" in error and "customer_id" in error
    _write(mapping, '[event]\ncustomer_id = "visitorid"\n')
    assert "unknown key 'event'" in _fails(tmp_path / "out", "--data", retail["events.csv"], "--mapping", mapping)
    _write(mapping, '[events]\ntimestamp_unit = "us"\n')
    assert "key 'events.timestamp_unit'" in _fails(tmp_path / "out", "--data", retail["events.csv"],
                                                   "--mapping", mapping)
    _write(mapping, '[events\n')
    assert "not valid TOML" in _fails(tmp_path / "out", "--data", retail["events.csv"], "--mapping", mapping)


def test_unreadable_part_file(retail: dict[str, Any], tmp_path: Path) -> None:
    events = tmp_path / "events" / "date=2019-10-02"
    events.mkdir(parents=True)
    for part in retail["events"].rglob("*.parquet"):
        target = tmp_path / "events" / part.relative_to(retail["events"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(part.read_bytes())
    bad = _write(events / "part-0.parquet", "not parquet")
    error = _fails(tmp_path / "out", "--data", tmp_path / "events", "--mapping", MAPPINGS / "retailrocket.toml")
    assert f"{bad}: unreadable parquet file" in error


def test_empty_directory_and_unmatched_glob(tmp_path: Path) -> None:
    (tmp_path / "events" / "date=2019-10-01").mkdir(parents=True)
    _write(tmp_path / "events" / "_SUCCESS", "")
    assert f"{tmp_path / 'events'}: empty directory" in _fails(tmp_path / "out", "--data", tmp_path / "events")
    assert "no files match" in _fails(tmp_path / "out", "--data", tmp_path / "events" / "*.parquet")


def test_catalog_without_id_column(retail: dict[str, Any], tmp_path: Path) -> None:
    products = pd.read_csv(retail["products"], dtype=str).rename(columns={"sku": "product"})
    products.to_csv(tmp_path / "products.csv", index=False)
    error = _fails(tmp_path / "out", "--data", retail["events.csv"], "--catalog", tmp_path / "products.csv",
                   "--mapping", MAPPINGS / "retailrocket.toml")
    assert f"{tmp_path / 'products.csv'}: catalog has no item id column 'sku' (mapping key catalog.item_id)" in error


@pytest.mark.parametrize(("unit", "problem"), [("iso", "values do not parse as timestamps in this unit"),
                                               ("s", "outside 1980..2100; check timestamp_unit")])
def test_timestamps_in_the_wrong_unit(retail: dict[str, Any], tmp_path: Path, unit: str, problem: str) -> None:
    text = (MAPPINGS / "retailrocket.toml").read_text().replace('timestamp_unit = "ms"', f'timestamp_unit = "{unit}"')
    mapping = _write(tmp_path / "m.toml", text)
    error = _fails(tmp_path / "out", "--data", retail["events.csv"], "--mapping", mapping)
    assert f"{retail['events.csv']}: column 'timestamp' (events.timestamp, timestamp_unit = \"{unit}\")" in error
    assert problem in error


def test_python_api_raises_the_same_errors(retail: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="empty directory"):
        load_dataset([str(tmp_path)])
    with pytest.raises(DataValidationError, match="missing required column"):
        load_dataset([str(retail["events.csv"])], mapping=ColumnMapping(customer_id="visitor"))
