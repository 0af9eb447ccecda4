import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from recsys import ArtifactError, Dataset, Intent, SubstituteEngine, TrainConfig
from recsys.cli import app
from recsys.domain.schema import PURCHASE_TYPES
from recsys.model.registry import INTENT_METHODS
from recsys.query.availability import EVERYTHING
from training.evaluation import (
    AVAILABILITY_MODES,
    BOUNDS,
    HIT_KS,
    INTENT_SPECIALISTS,
    MARGIN_METRICS,
    QUERY_TYPES,
    SUBSETS,
    default_split,
    discover_as_of,
    engine_ranker,
    evaluate,
    future_trials,
    margin_interval,
)
from training.evaluation.baselines import FuturePopularInGroup
from training.pipeline import TrainResult, train
from training.queries import build_queries


def _purchases(dataset: Dataset) -> pd.DataFrame:
    return dataset.events[dataset.events["event_type"].isin(PURCHASE_TYPES)]


@pytest.fixture(scope="module")
def split(dataset: Dataset) -> pd.Timestamp:
    return default_split(dataset.events)


@pytest.fixture(scope="module")
def before_split(dataset: Dataset, config: TrainConfig, split: pd.Timestamp,
                 tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    return train(dataset, config, out_dir=tmp_path_factory.mktemp("eval"), train_until=split.to_pydatetime(),
                 show_progress=False, make_current=False)


def test_split_is_after_week_40(split: pd.Timestamp) -> None:
    assert split == pd.Timestamp("2017-10-08")


def test_queries_follow_the_switch_protocol(dataset: Dataset, before_split: TrainResult,
                                            split: pd.Timestamp) -> None:
    engine = SubstituteEngine.load(before_split.model_dir)
    queries = build_queries(dataset.events, engine, split)
    assert len(queries) > 1000
    pairs = list(zip(queries.customer.tolist(), queries.x.tolist(), strict=True))
    assert len(set(pairs)) == len(pairs)  # one query per (customer, X)
    events = _purchases(dataset)  # the protocol reads purchases only (views and carts are no switch)
    ids = engine.item_ids
    group_of = dict(zip(ids, engine.model.group_of, strict=True))
    rng = np.random.default_rng(0)
    for i in rng.choice(len(queries), 50, replace=False):
        x, relevant = queries.x[i], queries.relevant[i]
        assert x not in relevant and len(relevant) >= 1
        assert np.all(engine.model.group_of[relevant] == engine.model.group_of[x])
        assert set(queries.new[i]) <= set(relevant)
        customer = str(engine.model.customers[queries.customer[i]])
        history = events[(events["customer_id"] == customer) & (events["timestamp"] < split)]
        assert history.loc[history["item_id"] == ids[x], "session_id"].nunique() >= 2
        bought = set(history["item_id"])
        assert all(ids[n] not in bought for n in queries.new[i])
        # relevant: the group's other items in every test basket of the customer that holds no X
        after = events[(events["customer_id"] == customer) & (events["timestamp"] >= split)]
        after = after[after["item_id"].map(group_of) == engine.model.group_of[x]]
        switched = after.groupby("session_id")["item_id"].filter(lambda basket: ids[x] not in set(basket))
        assert set(ids[relevant]) == set(switched)
    # per basket (what the ranker is fitted on): one query per switch basket, each with part of its pair's Ys
    baskets = build_queries(dataset.events, engine, split, per_basket=True)
    assert len(baskets) > len(queries)
    of_pair = {pair: set(relevant.tolist()) for pair, relevant in zip(pairs, queries.relevant, strict=True)}
    for customer, x, relevant in zip(baskets.customer.tolist(), baskets.x.tolist(), baskets.relevant, strict=True):
        assert set(relevant.tolist()) <= of_pair[(customer, x)]
    assert set(zip(baskets.customer.tolist(), baskets.x.tolist(), strict=True)) == set(pairs)


def test_metrics_are_well_formed_and_on_the_same_queries(dataset: Dataset, before_split: TrainResult,
                                                         split: pd.Timestamp) -> None:
    engine = SubstituteEngine.load(before_split.model_dir)
    result = evaluate(engine, dataset, split, max_queries=600, show_progress=False)
    assert result.queries["all"] == 600 and 0 < result.queries["new_to_customer"] < 600
    assert set(result.metrics) == {"ours", "ours-familiar", "ours-discover", "random-in-group", "popular-in-group",
                                   "history-then-popular", "cooccurrence-in-group", "implicit-similar-raw",
                                   "implicit-in-group"}
    for values in result.metrics.values():
        for subset in SUBSETS:
            hr = [values[subset][f"HR@{k}"] for k in HIT_KS]
            assert hr == sorted(hr) and all(0 <= v <= 1 for v in values[subset].values())
            assert values[subset]["MRR@10"] <= values[subset]["HR@10"]
        assert 0 < values["all"]["coverage"] <= 1
    random, ours = result.metrics["random-in-group"], result.metrics["ours"]
    assert ours["all"]["HR@3"] > 2 * random["all"]["HR@3"]
    assert ours["new_to_customer"]["HR@3"] > random["new_to_customer"]["HR@3"]
    # ours minus the best baseline, with an interval that holds it: the evaluator sees whether a win is noise
    for subset in SUBSETS:
        for metric in MARGIN_METRICS:
            margin = result.margins[subset][metric]
            name, best = result.best_baseline(subset, metric)
            assert margin["baseline"] == name
            assert margin["difference"] == pytest.approx(result.metrics["ours"][subset][metric] - best, abs=1e-5)
            low, high = margin["ci95"]
            assert low <= margin["difference"] <= high and high - low > 0
    # each other intent against its specialist, on the queries it is for
    assert set(result.intent_margins) == {"familiar", "discover"}
    for intent, specialist in INTENT_SPECIALISTS.items():
        for metric in MARGIN_METRICS:
            margin = result.intent_margins[intent.value][metric]
            assert margin["baseline"] == specialist.baseline
            ours_value = result.metrics[INTENT_METHODS[intent]][specialist.subset][metric]
            assert margin["difference"] == pytest.approx(
                ours_value - result.metrics[specialist.baseline][specialist.subset][metric], abs=1e-5)
    # headroom: each kind of query is a part of the whole, and the oracle is at least each of its two sources
    assert set(result.bounds) == set(BOUNDS)
    assert sum(result.query_types.values()) == 600 and min(result.query_types.values()) > 0
    assert set(result.by_query_type) == set(result.metrics) | set(BOUNDS)
    for name, by_type in result.by_query_type.items():
        values = result.metrics.get(name) or result.bounds[name]
        for metric in MARGIN_METRICS:
            parts = sum(result.query_types[kind] * by_type[kind][metric] for kind in QUERY_TYPES)
            assert parts / 600 == pytest.approx(values["all"][metric])
            if name == "oracle-switch":
                for kind in QUERY_TYPES:
                    assert by_type[kind][metric] >= max(result.by_query_type[source][kind][metric]
                                                        for source in ("history-then-popular", BOUNDS[0]))
    # history-then-popular is made for rebuys, the future's trials for trials
    history, future = result.by_query_type["history-then-popular"], result.by_query_type[BOUNDS[0]]
    assert history["rebuy"]["HR@3"] > future["rebuy"]["HR@3"] and future["trial"]["HR@3"] > history["trial"]["HR@3"]
    # the trained ranker was fitted on its own validation weeks, before the split
    ranker = before_split.manifest.ranker
    assert ranker.source == "learned" and ranker.validation is not None
    assert pd.Timestamp(ranker.validation["start"]) < split


def test_refuses_a_model_that_saw_the_test_period(dataset: Dataset, model_dir: Path,
                                                   split: pd.Timestamp) -> None:
    with pytest.raises(ArtifactError, match="leak"):
        evaluate(SubstituteEngine.load(model_dir), dataset, split, max_queries=10, show_progress=False)


def test_cli_writes_table_json_and_plot(before_split: TrainResult, data_args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "evaluate", "--model", str(before_split.model_dir), *data_args, "--max-queries", "300",
        "--json", str(tmp_path / "e.json"), "--plot", str(tmp_path / "e.png"), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["queries"]["all"] == 300 and "history-then-popular" in metrics["metrics"]
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "95% interval" in result.output
    # every intent against what it is judged by, HR@1 included
    for line in ("balanced, all HR@1", "balanced, new_to_customer HR@3", "familiar, all HR@3",
                 "familiar, all NDCG@10", "discover, new_to_customer HR@1", "discover, new_to_customer HR@3"):
        assert line in result.output
    assert "history-then-popular" in result.output and "popular-in-group" in result.output
    assert set(metrics["margins"]) == set(SUBSETS) and set(metrics["bounds"]) == set(BOUNDS)
    assert set(metrics["intent_margins"]) == {"familiar", "discover"}
    assert "headroom" in result.output and "oracle-switch *" in result.output


def test_discover_as_of_the_split_is_the_served_discover_for_a_model_trained_before_it(
        dataset: Dataset, before_split: TrainResult, split: pd.Timestamp) -> None:
    engine = SubstituteEngine.load(before_split.model_dir)
    queries = build_queries(dataset.events, engine, split).sample(400, 0)
    served, as_of = engine_ranker(engine, Intent.discover), discover_as_of(engine, dataset.events, split)
    answered = 0
    for x, customer in zip(queries.x.tolist(), queries.customer.tolist(), strict=True):
        expected = served(x, customer)
        assert np.array_equal(as_of(x, customer), expected)
        answered += len(expected) > 0
    assert answered > 300
    # as of an earlier date the customer had bought less: items bought since come back
    earlier = discover_as_of(engine, dataset.events, split - pd.Timedelta(weeks=20))
    assert any(not np.array_equal(earlier(x, c), served(x, c))
               for x, c in zip(queries.x.tolist()[:100], queries.customer.tolist()[:100], strict=True))


def test_a_test_period_with_an_end_holds_only_its_switches(dataset: Dataset, before_split: TrainResult,
                                                            split: pd.Timestamp) -> None:
    engine = SubstituteEngine.load(before_split.model_dir)
    end = split + pd.Timedelta(weeks=3)
    bounded = evaluate(engine, dataset, split, show_progress=False, end=end)
    whole = build_queries(dataset.events, engine, split)
    within = build_queries(dataset.events[dataset.events["timestamp"] < end], engine, split)
    assert bounded.end == str(end) and bounded.queries["all"] == len(within) < len(whole)
    with pytest.raises(ValueError, match="not after the split"):
        evaluate(engine, dataset, split, show_progress=False, end=split)


def test_future_trials_are_first_purchases_in_the_test_period(dataset: Dataset, before_split: TrainResult,
                                                              split: pd.Timestamp) -> None:
    engine = SubstituteEngine.load(before_split.model_dir)
    per_item, by_customer = future_trials(engine, dataset.events, split)
    events = _purchases(dataset)  # a trial is a first purchase
    first = events.groupby(["customer_id", "item_id"])["timestamp"].min()
    tried = first[first >= split].reset_index()
    assert per_item.sum() == np.isin(tried["item_id"], engine.item_ids).sum() > 0
    rng = np.random.default_rng(0)
    for customer in rng.choice(events["customer_id"].unique(), 20, replace=False):
        row = engine.customer_row(customer)
        if row is None:
            continue
        expected = tried.loc[tried["customer_id"] == customer, "item_id"]
        assert sorted(engine.item_ids[by_customer[row].indices]) == sorted(expected[np.isin(expected, engine.item_ids)])


def test_future_popular_leaves_the_query_customer_out(before_split: TrainResult) -> None:
    engine = SubstituteEngine.load(before_split.model_dir)
    sizes = np.diff(engine.model.group_ptr)
    lo = int(engine.model.group_ptr[np.flatnonzero(sizes >= 4)[0]])
    x, own, other = lo, lo + 2, lo + 3  # own: tried by customer 0 only; other: by somebody else
    per_item = np.zeros(engine.model.n_items, dtype=np.int64)
    per_item[[own, other]] = 1
    by_customer = sp.csr_matrix(([1.0], ([0], [own])), shape=(len(engine.model.customers), engine.model.n_items))
    rank = FuturePopularInGroup(engine, per_item, by_customer)
    assert rank(x, -1)[:2].tolist() == [own, other]  # a tie: the more popular before the split first
    assert rank(x, 0)[0] == other and x not in rank(x, 0)


def test_margin_interval_resamples_whole_customers() -> None:
    rng = np.random.default_rng(0)
    customers = np.repeat(np.arange(200), 5)
    baseline = rng.integers(0, 2, len(customers)).astype(float)
    assert margin_interval(baseline + 1, baseline, customers) == (1.0, 1.0, 1.0)
    # one customer's queries move together: the interval is wider than if the 1,000 queries were independent
    shared = np.repeat(rng.normal(0, 1, 200), 5)
    difference, low, high = margin_interval(shared, np.zeros_like(shared), customers)
    _, low_iid, high_iid = margin_interval(shared, np.zeros_like(shared), np.arange(len(shared)))
    assert low < difference < high and high - low > 1.5 * (high_iid - low_iid)


def test_partition_is_a_seeded_sample_and_its_complement(dataset: Dataset, before_split: TrainResult,
                                                          split: pd.Timestamp) -> None:
    queries = build_queries(dataset.events, SubstituteEngine.load(before_split.model_dir), split)
    sample, rest = queries.partition(300, seed=4)
    assert len(sample) == 300 and len(rest) == len(queries) - 300
    assert np.array_equal(sample.x, queries.sample(300, seed=4).x)
    both = sample + rest
    pairs = sorted(zip(both.customer.tolist(), both.x.tolist(), [r.tolist() for r in both.relevant], strict=True))
    assert pairs == sorted(zip(queries.customer.tolist(), queries.x.tolist(), [r.tolist() for r in queries.relevant],
                               strict=True))
    assert len(queries.partition(None, seed=4)[1]) == 0


def test_availability_measures_ours_with_only_evidenced_items(dataset: Dataset, before_split: TrainResult,
                                                              split: pd.Timestamp) -> None:
    """--availability: ours offering every item is the main table's ours; at the switch basket's store (a store of
    the data) and online only items with evidence are offered; the engine keeps the policy it had (here the
    trainer's, which offers every item: the evidence is the service's default policy, whatever the engine's)."""
    engine = SubstituteEngine.load(before_split.model_dir, policy=EVERYTHING)
    served = engine.policy
    result = evaluate(engine, dataset, split, max_queries=400, show_progress=False, availability=True)
    assert engine.policy == served
    assert list(result.availability) == list(AVAILABILITY_MODES)
    every, online, at_store = (result.availability[mode] for mode in AVAILABILITY_MODES)
    assert every["HR@3"] == round(result.metrics["ours"]["all"]["HR@3"], 5), "every item: the main table's ours"
    assert at_store != every and online != every, "the evidence changes the answers"
    assert all(0 <= v <= 1 for mode in (online, at_store) for v in mode.values())
    queries = build_queries(dataset.events, engine, split).sample(400, 0)
    stores = set(dataset.events["store_id"].dropna().astype(str))
    assert queries.store is not None and set(queries.store.tolist()) <= stores | {"online"}
    assert set(queries.store.tolist()) & stores, "switch baskets happen at real stores"
    written = result.to_json()["availability"]
    assert written == result.availability
