"""The trainer's memory-lean paths (categorical ids, hashed duplicate check, a bounded validation sample) give
the same model as before, and the cost-curve benchmark's data builders make what they say."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from benchmarks.training_scale import replicate, synthetic_catalog, write_lake
from recsys import Dataset, TrainConfig
from recsys.cli import app
from recsys.model.artifact import read_manifest
from training.events import ID_COLUMNS, categorical, duplicated
from training.mapping import DataMapping
from training.pipeline import TrainResult, train
from training.selection import customer_sample


def _model_files(model_dir: Path) -> dict[str, str]:
    """The checksums of the model's data files (the report differs by version and time)."""
    files = read_manifest(model_dir).files
    return {name: digest for name, digest in files.items() if not name.startswith("report")}


def test_categorical_input_trains_the_identical_model(dataset: Dataset, config: TrainConfig, trained: TrainResult,
                                                      tmp_path: Path) -> None:
    # replicate(.., 1) holds the ids as categoricals whose categories are not in sorted order
    compact = replicate(dataset, 1)
    assert isinstance(compact.events["customer_id"].dtype, pd.CategoricalDtype)
    assert not compact.events["customer_id"].cat.categories.is_monotonic_increasing
    result = train(compact, config, out_dir=tmp_path, show_progress=False, with_report=False)
    assert _model_files(result.model_dir) == _model_files(trained.model_dir)
    assert result.manifest.ranker == trained.manifest.ranker  # the same validation queries and fit
    assert result.manifest.counts == trained.manifest.counts


def test_duplicate_check_is_exact(dataset: Dataset) -> None:
    events = dataset.events.head(20_000)
    events = pd.concat([events, events.iloc[::7], events.iloc[::11].assign(quantity=99.0)], ignore_index=True)
    compact = events.assign(**{c: categorical(events[c]) for c in ID_COLUMNS})
    expected = events.duplicated().to_numpy()
    assert expected.sum() > 2_000  # the copied rows, not the ones with another quantity
    np.testing.assert_array_equal(duplicated(compact), expected)
    np.testing.assert_array_equal(duplicated(events), expected)


def test_categorical_codes_sort_like_the_ids(dataset: Dataset) -> None:
    ids = replicate(dataset, 2).events["session_id"]
    sorted_ids = categorical(ids)
    codes, uniques = pd.factorize(sorted_ids, sort=True)
    assert list(uniques.astype(str)) == sorted(ids.astype(str).unique())
    assert (np.asarray(uniques.astype(str))[codes] == ids.astype(str).to_numpy()).all()


def test_validation_customers_are_a_seeded_sample_with_all_their_events(dataset: Dataset) -> None:
    events = dataset.events.assign(customer_id=categorical(dataset.events["customer_id"]))
    sample = customer_sample(events, 100, seed=0)
    chosen = sample["customer_id"].astype(str).unique()
    assert len(chosen) == 100
    assert len(sample) == int(events["customer_id"].astype(str).isin(chosen).sum())
    assert sample.equals(customer_sample(events, 100, seed=0))
    assert not sample.equals(customer_sample(events, 100, seed=1))
    assert customer_sample(events, 300, seed=0) is events  # no more customers than the budget: all


def test_replicated_households_shop_like_their_originals(dataset: Dataset) -> None:
    copies = replicate(dataset, 3)
    events, original = copies.events, dataset.events
    assert len(events) == 3 * len(original)
    assert events["customer_id"].nunique() == 3 * original["customer_id"].nunique()
    assert events["session_id"].nunique() == 3 * original["session_id"].nunique()
    assert set(events["item_id"].astype(str)) == set(original["item_id"])
    second = events.iloc[len(original):2 * len(original)].reset_index(drop=True)
    assert (second["customer_id"].astype(str) == original["customer_id"] + "~1").all()
    for column in ("item_id", "store_id"):
        assert (second[column].astype(str) == original[column]).all()
    for column in ("timestamp", "quantity", "price"):
        pd.testing.assert_series_equal(second[column], original[column], check_names=False)


def test_synthetic_catalog_spreads_events_over_real_groups() -> None:
    data = synthetic_catalog(n_items=20_000, n_customers=500, n_events=50_000)
    catalog, events = data.catalog, data.events
    assert len(catalog) == catalog["item_id"].nunique() == 20_000
    assert events["item_id"].astype(str).isin(catalog["item_id"]).all()
    assert catalog["product_type"].nunique() > 100
    assert events["item_id"].nunique() > 2_000  # a long tail, not a handful of items


def test_lake_is_monthly_parquet_parts_a_catalog_and_a_mapping_the_command_line_reads(
        dataset: Dataset, tmp_path: Path) -> None:
    purchases = dataset.events[dataset.events["event_type"] == "purchase"].head(3_000).reset_index(drop=True)
    copies = replicate(Dataset(events=purchases, catalog=dataset.catalog, reports=[]), 2)
    paths = write_lake(copies, tmp_path / "lake")
    parts = sorted(paths["events"].glob("month=*/*.parquet"))
    months = purchases["timestamp"].dt.strftime("%Y-%m").unique()
    assert sorted(p.parent.name for p in parts) == sorted(f"month={m}" for m in months)
    lake = pd.read_parquet(paths["events"])
    assert len(lake) == 2 * len(purchases)
    assert {"loyalty_card", "sku", "basket_id", "sold_at", "store_no"} <= set(lake.columns)
    mapping = DataMapping.from_toml(paths["mapping"])
    assert mapping.events.customer_id == "loyalty_card" and mapping.catalog.item_id == "sku"
    assert len(pd.read_parquet(paths["catalog"])) == len(dataset.catalog)
    result = CliRunner().invoke(app, ["validate", "--data", str(paths["events"]), "--catalog", str(paths["catalog"]),
                                      "--mapping", str(paths["mapping"]), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"]["events"] == 2 * len(purchases)
    assert report["counts"]["customers"] == 2 * purchases["customer_id"].nunique()
