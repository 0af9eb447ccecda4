"""The Spark engine computes what the single-machine trainer computes: its ``Aggregates`` (every aggregate and pair
signal) equal field by field to the pandas backend's, on real data (300 Complete Journey households; the REES46
sample for browse sessions) and on the synthetic retailer (browsing, stores and substitutions together). Run with
``pytest -m spark`` (make test-spark)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from recsys import Dataset, DataValidationError
from recsys.domain.config import TrainConfig
from recsys.domain.schema import ValidationReport
from recsys.model.data import GROUP_KEYS, contiguous_ranges
from tests.synthetic import TINY
from training.aggregates import Aggregates, aggregate
from training.assortment import SalesEvidence
from training.events import prepare_events as prepare_pandas_events
from training.loaders import read_event_log
from training.pipeline import fit_model, train
from training.selection import learn_ranker

pytestmark = [pytest.mark.spark, pytest.mark.realdata,
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]  # pyspark on pandas 3

# the session, ``spark``, is tests/training/conftest.py's: the trainer's own, on loopback with no UI

#: a fixed "now" for both engines' future-timestamp check
NOW = pd.Timestamp.now()


def _reference(dataset: Dataset, config: TrainConfig) -> Aggregates:
    """The pandas backend's aggregates of ``dataset``, as ``training.pipeline.fit_model`` computes them."""
    return aggregate(dataset, config)[0]


def _canonical(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """A frame of sales evidence in one row order and one dtype per column, whichever engine computed it."""
    types = {"store_id": str, "item": np.int64, "last_age": np.float64, "before_age": np.float64,
             "holdout_lines": np.int64}
    return frame.astype({c: t for c, t in types.items() if c in frame}).sort_values(keys).reset_index(drop=True)


def _assert_same_aggregates(expected: Aggregates, computed: Aggregates, store_rtol: float) -> None:
    """Field by field: the reports, span, counts, frames, ids and every matrix (values within float32 noise, counts
    exact; the store x item sums within ``store_rtol``, see test_store_signals_match)."""
    for column in fields(Aggregates):
        name = column.name
        ours, theirs = getattr(computed, name), getattr(expected, name)
        if isinstance(theirs, sp.csr_matrix):
            rtol = store_rtol if name == "store_items" else 0 if name == "customer_count" else 1e-9
            _assert_same_matrix(theirs, ours, rtol=rtol)
        elif isinstance(theirs, pd.DataFrame):
            pd.testing.assert_frame_equal(ours, theirs, rtol=1e-9, check_exact=False, check_index_type=False)
        elif isinstance(theirs, ValidationReport):
            assert ours.as_dict() == theirs.as_dict()
        elif isinstance(theirs, SalesEvidence):
            for frame, keys in (("per_store_item", ["store_id", "item"]), ("per_item", ["item"])):
                pd.testing.assert_frame_equal(_canonical(getattr(ours, frame), keys),
                                              _canonical(getattr(theirs, frame), keys), obj=f"{name}.{frame}")
        elif isinstance(theirs, pd.Index | np.ndarray):
            np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=name)
        else:
            assert ours == theirs, name


@pytest.fixture(scope="module")
def cj_pair(spark: Any, cj_small: Dataset) -> tuple[Aggregates, Any]:
    from training.spark.aggregates import compute_aggregates, events_to_spark

    config = TrainConfig()
    computed = compute_aggregates(spark, events_to_spark(spark, cj_small.events), cj_small.catalog, config, now=NOW)
    return _reference(cj_small, config), computed


@pytest.fixture(scope="module")
def rees46_data(rees46_path: Path) -> Dataset:
    return read_event_log(rees46_path, known_event_types={"view", "cart", "purchase"})


@pytest.fixture(scope="module")
def rees46_pair(spark: Any, rees46_data: Dataset) -> tuple[Aggregates, Any]:
    from training.spark.aggregates import compute_aggregates, events_to_spark

    config = TrainConfig()
    computed = compute_aggregates(spark, events_to_spark(spark, rees46_data.events), rees46_data.catalog, config,
                                  now=NOW)
    return _reference(rees46_data, config), computed


def _assert_same_matrix(expected: sp.csr_matrix, actual: sp.csr_matrix, rtol: float = 1e-9) -> None:
    """The same shape and sparsity structure, values within ``rtol``."""
    assert expected.shape == actual.shape
    np.testing.assert_array_equal(expected.indptr, actual.indptr)
    np.testing.assert_array_equal(expected.indices, actual.indices)
    assert expected.dtype == actual.dtype == np.float32
    np.testing.assert_allclose(actual.data, expected.data, rtol=rtol, atol=0)


def test_validation_counts_and_span_match(cj_pair: tuple[Aggregates, Any]) -> None:
    expected, computed = cj_pair
    assert computed.report.as_dict() == expected.report.as_dict()
    assert computed.report.skipped == {"item not in catalog": 2}  # real catalog gaps in the slice
    assert computed.event_count == expected.event_count and computed.event_types == expected.event_types
    assert computed.data_start == expected.data_start and computed.data_end == expected.data_end


def test_item_frame_matches(cj_pair: tuple[Aggregates, Any]) -> None:
    expected, computed = cj_pair
    # same columns, the same group order and the same values: popularity, trend, price median, n_customers...
    pd.testing.assert_frame_equal(computed.items, expected.items, rtol=1e-9, check_exact=False)
    assert (computed.items["n_customers"] > 0).sum() > 10_000


def test_customer_matrices_and_stats_match(cj_pair: tuple[Aggregates, Any]) -> None:
    expected, computed = cj_pair
    assert list(computed.customers) == list(expected.customers) and len(computed.customers) == 300
    for name in ("customer_weight", "customer_recent"):
        _assert_same_matrix(getattr(expected, name), getattr(computed, name))
    _assert_same_matrix(expected.customer_count, computed.customer_count, rtol=0)  # counts: exact
    pd.testing.assert_frame_equal(computed.customer_stats, expected.customer_stats, rtol=1e-9, check_exact=False,
                                  check_index_type=False)


def test_store_signals_match(cj_pair: tuple[Aggregates, Any]) -> None:
    expected, computed = cj_pair
    assert list(computed.stores) == list(expected.stores) and len(computed.stores) > 50
    np.testing.assert_array_equal(computed.home_store, expected.home_store)
    # the pandas path adds the float32 weights one by one in scipy's (unspecified) order; Spark adds them in
    # float64 and rounds once, so the two differ by float32 accumulation only (a few 1e-7)
    _assert_same_matrix(expected.store_items, computed.store_items, rtol=2e-6)


@pytest.fixture(scope="module")
def synthetic_pair(spark: Any, synthetic: Dataset) -> tuple[Aggregates, Any]:
    from training.spark.aggregates import compute_aggregates, events_to_spark

    computed = compute_aggregates(spark, events_to_spark(spark, synthetic.events), synthetic.catalog, TINY, now=NOW)
    return _reference(synthetic, TINY), computed


@pytest.mark.parametrize("pair", ["cj_pair", "rees46_pair", "synthetic_pair"])
def test_every_aggregate_matches_field_by_field(pair: str, request: pytest.FixtureRequest) -> None:
    expected, computed = request.getfixturevalue(pair)
    _assert_same_aggregates(expected, computed, store_rtol=2e-6)


def test_the_synthetic_retailer_exercises_every_signal(synthetic_pair: tuple[Aggregates, Any]) -> None:
    _, computed = synthetic_pair
    assert {"purchase", "view", "cart", "substitution_accepted"} <= set(computed.event_types)
    for name in ("bought_instead", "switched_to", "tried", "viewed_together", "store_items"):
        assert getattr(computed, name).nnz > 1_000, name
    assert (computed.home_store >= 0).all() and len(computed.stores) == 6


def test_pair_signals_within_groups_match(cj_pair: tuple[Aggregates, Any]) -> None:
    expected, computed = cj_pair
    for name in ("bought_instead", "switched_to", "tried"):
        assert getattr(computed, name).nnz > 10_000, name
        _assert_same_matrix(getattr(expected, name), getattr(computed, name))
    # some items reach the cap of neighbours, so the top-k cut (and its tie-break) is exercised
    assert np.diff(computed.bought_instead.indptr).max() == TrainConfig().max_neighbours


def test_coview_on_browse_sessions_matches(rees46_pair: tuple[Aggregates, Any]) -> None:
    expected, computed = rees46_pair
    assert computed.report.as_dict() == expected.report.as_dict()
    assert computed.report.skipped == {"duplicate row": 5}
    assert computed.event_types == {"view": 17_052, "purchase": 214, "cart": 164}
    assert computed.viewed_together.nnz > 10_000
    _assert_same_matrix(expected.viewed_together, computed.viewed_together)
    pd.testing.assert_frame_equal(computed.items, expected.items, rtol=1e-9, check_exact=False)
    assert len(computed.stores) == 0 and (computed.home_store == -1).all()


def test_skip_reasons_match_with_train_until_and_bad_rows(spark: Any, rees46_data: Dataset) -> None:
    from training.spark.aggregates import events_to_spark, prepare_events

    # the loader's ids are categoricals: as text, so that rows can take values the log never had
    events = rees46_data.events.astype({c: object for c in ("customer_id", "item_id", "session_id", "event_type")})
    events.loc[0:9, "timestamp"] = pd.Timestamp("2099-01-01")  # a clock error at the source
    events.loc[10:14, "event_type"] = "teleport"
    events.loc[15:16, "item_id"] = "not-in-the-catalog"
    events = pd.concat([events, events.iloc[100:110]], ignore_index=True)  # duplicated rows
    dataset = Dataset(events=events, catalog=rees46_data.catalog, reports=[])
    until = datetime(2019, 10, 1, 2, 0)
    config = TrainConfig()
    expected = ValidationReport(source="trainer")
    prepare_pandas_events(dataset, config, until, expected)
    catalog_ids = spark.createDataFrame(rees46_data.catalog[["item_id"]])
    computed = ValidationReport(source="trainer")
    kept = prepare_events(events_to_spark(spark, events), catalog_ids, config, until, computed, now=NOW)
    assert computed.as_dict() == expected.as_dict()
    assert set(computed.skipped) == {"unknown event type", "item not in catalog", "timestamp in the future",
                                     "after --train-until", "duplicate row"}
    assert kept.count() == expected.rows_used
    with pytest.raises(DataValidationError, match="no usable events"):
        prepare_events(events_to_spark(spark, events), catalog_ids, config, datetime(2000, 1, 1),
                       ValidationReport(source="trainer"), now=NOW)


def test_cli_spark_engine_writes_the_model_the_single_machine_trainer_writes(spark: Any, rees46_path: Path,
                                                                           tmp_path: Path) -> None:
    from recsys import SubstituteEngine
    from recsys.cli import app
    from recsys.model.artifact import CURRENT, read_manifest
    from recsys.model.data import ModelData

    result = CliRunner().invoke(app, ["train", "--engine", "spark", "--spark-master", "local[2]", "--data",
                                      str(rees46_path), "--out", str(tmp_path / "spark"), "--no-progress"])
    assert result.exit_code == 0, result.output
    model_dir = Path(result.stdout.strip().splitlines()[-1])
    assert model_dir.resolve() == (tmp_path / "spark" / CURRENT).resolve()
    manifest = read_manifest(model_dir)  # every checksum verified
    assert manifest.engine == "spark"
    single = train(read_event_log(rees46_path, known_event_types=set(TrainConfig().event_weights)),
                            out_dir=tmp_path / "pandas", show_progress=False, with_report=False)
    assert manifest.counts == single.manifest.counts
    assert [s.model_dump() for s in manifest.sources] == [s.model_dump() for s in single.manifest.sources]
    ours, theirs = ModelData.load(model_dir), ModelData.load(single.model_dir)
    pd.testing.assert_frame_equal(ours.items, theirs.items, rtol=1e-9, check_exact=False)
    for name in ("viewed_together", "bought_instead", "switched_to", "tried", "customer_weight", "customer_count"):
        _assert_same_matrix(getattr(theirs, name), getattr(ours, name))
    engine = SubstituteEngine.load(model_dir)  # what `recsys serve` loads
    x = str(ours.items["item_id"].iloc[int(ours.viewed_together.tocoo().row[0])])
    assert len(engine.substitutes(x, k=5)) >= 1


@pytest.mark.parametrize(("content", "message"), [
    ("a,b\n1,2\n", "missing required column(s) user_id, product_id, event_time"),
    ("", "cannot read"),
    ("user_id,product_id,event_time\n", "no usable events"),
    ("user_id,product_id,event_time,event_type\n1,2,2019-10-01 00:00:00 UTC,teleport\n", "no usable events"),
])
def test_cli_spark_engine_refuses_bad_input_like_the_single_machine_path(spark: Any, tmp_path: Path, content: str,
                                                                         message: str) -> None:
    from recsys.cli import app
    from recsys.model.artifact import CURRENT

    (tmp_path / "log.csv").write_text(content)
    for engine in ("pandas", "spark"):
        result = CliRunner().invoke(app, ["train", "--engine", engine, "--data", str(tmp_path / "log.csv"),
                                          "--out", str(tmp_path / engine), "--no-progress"])
        assert result.exit_code == 2, (engine, result.output)
        assert message in " ".join(result.output.split()), (engine, result.output)
        assert "Traceback" not in result.output
        assert not (tmp_path / engine / CURRENT).exists()


def test_cli_spark_engine_without_pyspark_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    import sys

    from recsys.cli import app

    monkeypatch.setitem(sys.modules, "pyspark", None)  # as if the extra were not installed
    result = CliRunner().invoke(app, ["train", "--engine", "spark", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "pip install 'recsys[spark]'" in " ".join(result.output.split())


@pytest.mark.parametrize("option", [["--als", "mllib"], ["--spark-master", "local[2]"]])
def test_cli_spark_options_need_the_spark_engine(option: list[str], tmp_path: Path) -> None:
    from recsys.cli import app

    result = CliRunner().invoke(app, ["train", *option, "--out", str(tmp_path)])
    assert result.exit_code == 2 and f"{option[0]} needs --engine spark" in result.output
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def lake(rees46_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The REES46 sample as a data-lake export: hive-partitioned parquet parts with epoch-millisecond times, shops
    and other event names (docs/mappings/retailrocket.toml), a product file that lacks some of the items, and a
    config without the ranker."""
    root = tmp_path_factory.mktemp("lake")
    raw = pd.read_csv(rees46_path, dtype=str, keep_default_na=False)
    times = pd.to_datetime(raw["event_time"], utc=True)
    events = pd.DataFrame({
        "timestamp": (times - pd.Timestamp("1970-01-01", tz="UTC")) // pd.Timedelta(milliseconds=1),
        "visitorid": raw["user_id"].astype(np.int64), "itemid": raw["product_id"].astype(np.int64),
        "event": raw["event_type"].map({"view": "view", "cart": "addtocart", "purchase": "transaction"}),
        "session": raw["user_session"], "shop": "shop-" + (raw["user_id"].astype(np.int64) % 3).astype(str),
        "price": pd.to_numeric(raw["price"]),
    })
    for hour, frame in events.groupby(times.dt.hour):
        folder = root / "events" / f"hour={hour:02d}"
        folder.mkdir(parents=True)
        frame.to_parquet(folder / "part-0.parquet", index=False)
    (root / "events" / "_SUCCESS").write_text("")
    items = raw.groupby("product_id", sort=True).agg(brand=("brand", "last"), code=("category_code", "last"),
                                                     cid=("category_id", "last"))
    products = pd.DataFrame({
        "sku": items.index, "brand_name": items["brand"].where(items["brand"].ne(""), "our store"),
        "category_path": items["code"].str.replace(".", "/").where(items["code"].ne(""), "id:" + items["cid"]),
        "size": "500 ml", "list_price": "9.99", "own_brand": np.where(items["brand"].eq(""), "yes", "no"),
    })
    products = products[np.arange(len(products)) % 10 != 3]  # a tenth of the items missing from the catalog
    products.to_csv(root / "products.csv", index=False)
    (root / "cfg.json").write_text('{"ranker": {"enabled": false}}')
    return {"events": root / "events", "products": root / "products.csv", "cfg": root / "cfg.json",
            "mapping": Path(__file__).resolve().parents[2] / "docs" / "mappings" / "retailrocket.toml"}


def test_cli_spark_engine_reads_a_partitioned_lake_with_mapping_and_catalog(spark: Any, lake: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    from recsys.cli import app
    from recsys.model.artifact import CURRENT, read_manifest
    from recsys.model.data import ModelData

    manifests, models = {}, {}
    for engine in ("pandas", "spark"):
        result = CliRunner().invoke(app, ["train", "--engine", engine, "--data", str(lake["events"]), "--catalog",
                                          str(lake["products"]), "--mapping", str(lake["mapping"]), "--config",
                                          str(lake["cfg"]), "--out", str(tmp_path / engine), "--no-progress"])
        assert result.exit_code == 0, (engine, result.output)
        manifests[engine] = read_manifest(tmp_path / engine / CURRENT)
        models[engine] = ModelData.load(tmp_path / engine / CURRENT)
    pandas_sources = [s.model_dump() for s in manifests["pandas"].sources]
    assert [s.model_dump() for s in manifests["spark"].sources] == pandas_sources
    assert pandas_sources[1]["skipped"]["item not in catalog"] > 100
    assert manifests["spark"].counts == manifests["pandas"].counts and manifests["spark"].counts["stores"] == 3
    ours, theirs = models["spark"], models["pandas"]
    pd.testing.assert_frame_equal(ours.items, theirs.items, rtol=1e-9, check_exact=False)  # list prices filled
    np.testing.assert_array_equal(ours.home_store, theirs.home_store)
    for name in ("viewed_together", "bought_instead", "customer_weight", "customer_count"):
        _assert_same_matrix(getattr(theirs, name), getattr(ours, name))


def test_a_catalog_url_is_read_by_spark_with_the_loaders_rules(spark: Any, lake: dict[str, Path]) -> None:
    """A --catalog only Spark can reach (s3a://, hdfs:// ...; here a file: URL, which the driver's loader cannot
    open) gives the catalog and report the local path gives."""
    from training.mapping import DataMapping
    from training.spark.reading import read_sources

    mapping = DataMapping.from_toml(lake["mapping"])
    local = read_sources(spark, [str(lake["events"])], mapping, catalog=lake["products"])
    url = read_sources(spark, [str(lake["events"])], mapping, catalog=lake["products"].resolve().as_uri())
    pd.testing.assert_frame_equal(url[1], local[1])
    (local_report, *_), (url_report, *_) = local[2], url[2]
    assert url_report.source.endswith(lake["products"].resolve().as_uri())
    assert (url_report.rows_read, url_report.rows_used, url_report.skipped) == (
        local_report.rows_read, local_report.rows_used, local_report.skipped) and url_report.rows_read > 0
    assert url[0].count() == local[0].count() > 0
    with pytest.raises(DataValidationError, match="catalog has no item id column 'no_such_column'"):
        bad = DataMapping.model_validate({**mapping.model_dump(), "catalog": {**mapping.catalog.model_dump(),
                                                                              "item_id": "no_such_column"}})
        read_sources(spark, [str(lake["events"])], bad, catalog=lake["products"].resolve().as_uri())


@pytest.mark.parametrize(("unit", "times", "message"), [
    ("ms", ["1569888000", "1569888060", "1569888120"], "read as year 1970, outside 1980..2100; check timestamp_unit"),
    ("iso", ["not a time", "soon", "2019-10-01 00:00:00 UTC"], "2 of 3 values do not parse as timestamps"),
])
def test_cli_spark_engine_refuses_a_wrong_timestamp_unit_like_the_single_machine_path(
        spark: Any, tmp_path: Path, unit: str, times: list[str], message: str) -> None:
    from recsys.cli import app

    rows = "".join(f"{n},{n % 2},{t}\n" for n, t in enumerate(times))
    (tmp_path / "log.csv").write_text("visitor,sku,ts\n" + rows)
    (tmp_path / "mapping.toml").write_text(
        f'[events]\ncustomer_id = "visitor"\nitem_id = "sku"\ntimestamp = "ts"\ntimestamp_unit = "{unit}"\n')
    for engine in ("pandas", "spark"):
        result = CliRunner().invoke(app, ["train", "--engine", engine, "--data", str(tmp_path / "log.csv"),
                                          "--mapping", str(tmp_path / "mapping.toml"), "--out", str(tmp_path / engine),
                                          "--no-progress"])
        assert result.exit_code == 2, (engine, result.output)
        assert message in " ".join(result.output.split()), (engine, result.output)
        assert not (tmp_path / engine).exists() or not any((tmp_path / engine).iterdir())


def test_mllib_als_trains_a_loadable_model_whose_factors_put_co_bought_items_close(spark: Any, cj_small: Dataset,
                                                                                  tmp_path: Path) -> None:
    from recsys import SubstituteEngine
    from recsys.model.artifact import read_manifest
    from recsys.model.data import ModelData
    from training.spark.aggregates import events_to_spark
    from training.spark.trainer import train_spark

    config = TrainConfig()
    config = config.model_copy(update={"ranker": config.ranker.model_copy(update={"enabled": False})})
    result = train_spark(spark, events_to_spark(spark, cj_small.events), cj_small.catalog, [], config,
                         out_dir=tmp_path, show_progress=False, with_report=False, als="mllib")
    manifest = read_manifest(result.model_dir)  # every checksum verified
    assert manifest.engine == "spark" and manifest.als_loss == []  # MLlib reports no training loss
    model = ModelData.load(result.model_dir)
    factors = model.factors
    assert factors.shape == (len(model.items), config.als.factors)
    warm = model.items["n_customers"].to_numpy() > 0
    np.testing.assert_allclose(np.linalg.norm(factors[warm], axis=1), 1.0, rtol=1e-5)
    # each item's strongest "bought by the same customers" neighbour is closer than a random item of its group
    group_of, _ = contiguous_ranges(model.items[list(GROUP_KEYS)])
    bought_instead, rng = model.bought_instead, np.random.default_rng(0)
    close, random = [], []
    co_bought = np.flatnonzero(np.diff(bought_instead.indptr) > 0)
    for x in co_bought[:3000]:
        start, end = bought_instead.indptr[x], bought_instead.indptr[x + 1]
        y = bought_instead.indices[start + int(np.argmax(bought_instead.data[start:end]))]
        others = np.flatnonzero((group_of == group_of[x]) & warm)
        others = others[others != x]
        close.append(float(factors[x] @ factors[y]))
        random.append(float(factors[x] @ factors[rng.choice(others)]))
    assert len(close) >= 1000
    assert np.mean(close) > np.mean(random) + 0.1, (np.mean(close), np.mean(random))
    engine = SubstituteEngine.load(result.model_dir)  # what `recsys serve` loads
    assert len(engine.substitutes(str(model.items["item_id"].iloc[int(co_bought[0])]), k=5)) >= 1


def test_ranker_with_more_customers_than_the_sample_fits_what_one_machine_fits(spark: Any, cj_small: Dataset,
                                                                              tmp_path: Path) -> None:
    """With more customers than ``max_customers``, one machine trains the ranker's inner model on every event before
    the validation period and builds the queries from the customer sample; so must Spark's ranker stage, which
    trains the inner model in Spark and collects only the sample's events. Both sides are called as ``train()``
    and ``train_spark()`` call them."""
    from pyspark.sql import functions as F

    from training.spark.aggregates import events_to_spark, prepare_events
    from training.spark.trainer import spark_ranker

    config = TrainConfig()
    config = config.model_copy(update={"ranker": config.ranker.model_copy(update={"max_customers": 100})})
    events = prepare_pandas_events(cj_small, config, None, ValidationReport(source="trainer"))
    assert events["customer_id"].nunique() >= 3 * config.ranker.max_customers
    inner_data = Dataset(events=events, catalog=cj_small.catalog, reports=[])
    theirs, _, their_metrics = learn_ranker(cj_small.catalog, events, config, lambda inner, until: fit_model(
        inner_data, inner, train_until=until, show_progress=False))

    catalog_ids = spark.createDataFrame(cj_small.catalog[["item_id"]].astype(str), schema="item_id string")
    kept = prepare_events(events_to_spark(spark, cj_small.events), catalog_ids, config, None,
                          ValidationReport(source="trainer"), now=NOW)
    customers = pd.Index(np.sort(np.asarray([r[0] for r in kept.select("customer_id").distinct().collect()],
                                            dtype=object).astype(str)))
    data_end = pd.Timestamp(kept.agg(F.max("t_us")).first()[0], unit="us").as_unit("ns")  # as compute_aggregates
    ours, _, our_metrics = spark_ranker(spark, kept, customers, data_end, cj_small.catalog, config)
    kept.unpersist()

    assert theirs.source == "learned" and ours.source == "learned"
    # the same validation start (from all the data, not the sample), the same queries and candidate lists: the inner
    # models, which compute every candidate's features, agree
    assert ours.validation is not None and theirs.validation is not None
    assert {k: v for k, v in ours.validation.items() if k != "loss"} == \
        {k: v for k, v in theirs.validation.items() if k != "loss"}
    assert ours.validation["loss"] == pytest.approx(theirs.validation["loss"], abs=1e-4)
    for name in ("weights", "history_weights"):  # rounded to 5 decimals: allow one unit of float32 noise there
        mine, other = getattr(ours, name), getattr(theirs, name)
        assert mine.keys() == other.keys()
        np.testing.assert_allclose([mine[k] for k in other], list(other.values()), rtol=0, atol=2e-5)
    assert ours.history_bias == pytest.approx(theirs.history_bias, abs=2e-5)
    assert ours.min_score == pytest.approx(theirs.min_score, abs=1e-6)
    # the inner engine with the default weights answers the held-out queries alike (the co-occurrence baseline is
    # built from the sample's baskets on Spark, from every basket on one machine, so the baselines may differ)
    assert our_metrics is not None and their_metrics is not None
    assert our_metrics["split"] == their_metrics["split"] and our_metrics["queries"] == their_metrics["queries"]
    for subset, values in their_metrics["methods"]["default-weights"].items():
        assert our_metrics["methods"]["default-weights"][subset] == pytest.approx(values, abs=1e-9)


def test_train_spark_refuses_an_unknown_als_engine(spark: Any) -> None:
    from training.spark.trainer import train_spark

    with pytest.raises(ValueError, match="als must be one of driver, mllib"):
        train_spark(spark, None, pd.DataFrame(), [], als="gpu")  # type: ignore[arg-type]
