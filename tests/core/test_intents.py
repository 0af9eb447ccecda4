"""The request's intent: balanced (the default), familiar and discover, on the session's model."""

from pathlib import Path

import numpy as np
import pytest

from recsys import Intent, StockUpdate, SubstituteEngine, SubstituteFilters, UnknownIntentError
from tests.core.served import served_scores
from training.pipeline import TrainResult
from training.ranker_fit import FAMILIAR_SHIFTS


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> SubstituteEngine:
    """One engine for the module: loading it costs more than these tests (the stock test uses its own store)."""
    return SubstituteEngine.load(model_dir)


def _bought(engine: SubstituteEngine, customer: str) -> set[str]:
    """The items the customer bought, read from the model's purchase counts."""
    row = engine.customer_row(customer)
    assert row is not None
    counts = engine.model.customer_count
    start, end = counts.indptr[row], counts.indptr[row + 1]
    items = counts.indices[start:end][counts.data[start:end] > 0]
    return set(engine.item_ids[items].tolist())


def _queries(engine: SubstituteEngine, n: int, seed: int) -> list[tuple[str, str]]:
    """(item, customer) pairs where the customer bought the item and other items of its group: the queries where
    the intents can differ."""
    rng = np.random.default_rng(seed)
    counts, group_of = engine.model.customer_count, engine.model.group_of
    pairs = []
    for row in rng.permutation(len(engine.model.customers)):
        items = counts.indices[counts.indptr[row]:counts.indptr[row + 1]]
        groups, sizes = np.unique(group_of[items], return_counts=True)
        if (sizes >= 3).any():
            x = items[group_of[items] == groups[np.argmax(sizes)]][0]
            pairs.append((str(engine.item_ids[x]), str(engine.model.customers[row])))
        if len(pairs) == n:
            break
    return pairs


def test_the_answer_says_its_intent_and_balanced_is_the_default(engine: SubstituteEngine) -> None:
    for item_id, customer in _queries(engine, 40, seed=1):
        default = engine.substitutes(item_id, customer, k=5)
        balanced = engine.substitutes(item_id, customer, k=5, intent="balanced")
        assert default.intent is Intent.balanced and balanced.intent is Intent.balanced
        assert [(s.item_id, s.score) for s in default] == [(s.item_id, s.score) for s in balanced]
        for intent in Intent:
            assert engine.substitutes(item_id, customer, k=5, intent=intent.value).intent is intent


def test_an_unknown_intent_is_a_typed_error(engine: SubstituteEngine) -> None:
    item_id, customer = _queries(engine, 1, seed=2)[0]
    with pytest.raises(UnknownIntentError, match="unknown intent 'cheapest'") as raised:
        engine.substitutes(item_id, customer, intent="cheapest")
    assert isinstance(raised.value, ValueError) and raised.value.intent == "cheapest"
    with pytest.raises(UnknownIntentError):
        engine.order_substitutes([item_id], customer, intent="Familiar")  # names are exact


def test_discover_never_returns_an_item_the_customer_bought(engine: SubstituteEngine) -> None:
    differs = 0
    for item_id, customer in _queries(engine, 150, seed=3):
        bought = _bought(engine, customer)
        discover = engine.substitutes(item_id, customer, k=10, intent="discover")
        assert not bought & {s.item_id for s in discover}
        assert all(s.bought_before == 0 for s in discover)
        differs += bool(bought & {s.item_id for s in engine.substitutes(item_id, customer, k=10)})
    assert differs > 30, "the queries hold the customer's own items: discover is tested where it matters"


def test_familiar_puts_the_customers_own_items_higher(engine: SubstituteEngine) -> None:
    own_top3 = {Intent.balanced: 0, Intent.familiar: 0}
    for item_id, customer in _queries(engine, 150, seed=4):
        bought = _bought(engine, customer)
        answers = {intent: engine.substitutes(item_id, customer, k=10, intent=intent) for intent in own_top3}
        for intent, answer in answers.items():
            own_top3[intent] += sum(s.item_id in bought for s in answer[:3])
    assert own_top3[Intent.familiar] > own_top3[Intent.balanced]


def test_without_a_known_customer_every_intent_is_balanced(engine: SubstituteEngine) -> None:
    for item_id, _ in _queries(engine, 30, seed=5):
        for customer in (None, "no-such-customer"):
            balanced = engine.substitutes(item_id, customer, k=10)
            for intent in (Intent.familiar, Intent.discover):
                answer = engine.substitutes(item_id, customer, k=10, intent=intent)
                assert [(s.item_id, s.score) for s in answer] == [(s.item_id, s.score) for s in balanced]
                assert not answer.personalized


def test_every_intent_keeps_the_hard_rules_and_filters(engine: SubstituteEngine) -> None:
    queries = _queries(engine, 60, seed=6)
    out = {item_id for item_id, _ in queries[::2]}
    engine.inventory.apply([StockUpdate(item_id=i, store_id="S9", in_stock=False) for i in out])
    for item_id, customer in queries:
        exclude = sorted(_bought(engine, customer) - {item_id})[:1]
        for intent in Intent:
            answer = engine.substitutes(item_id, customer, store_id="S9", k=10, exclude=exclude, intent=intent,
                                        filters=SubstituteFilters(private_label=False))
            ids = {s.item_id for s in answer}
            assert item_id not in ids and not ids & out and not ids & set(exclude)
            assert all(not s.private_label and s.reasons for s in answer)
            assert len(ids) == len(answer) <= 10


def test_an_order_is_answered_with_its_intent(engine: SubstituteEngine) -> None:
    queries = _queries(engine, 20, seed=7)
    customer = queries[0][1]
    items = [item_id for item_id, c in queries if c == customer] or [queries[0][0]]
    order = engine.order_substitutes(items, customer, k=3, intent="discover")
    bought = _bought(engine, customer)
    assert order.lines and all(line.intent is Intent.discover for line in order.lines)
    assert not bought & {s.item_id for line in order.lines for s in line}


def test_the_familiar_shift_is_chosen_on_validation(trained: TrainResult) -> None:
    ranker = trained.manifest.ranker
    assert ranker.familiar_search is not None and set(ranker.familiar_search) == {str(s) for s in FAMILIAR_SHIFTS}
    assert ranker.familiar_shift == max(FAMILIAR_SHIFTS, key=lambda s: ranker.familiar_search[str(s)])
    methods = trained.manifest.metrics["methods"]
    # on the held-out validation queries familiar is ranked for all queries, discover for new-to-customer ones
    assert methods["ours-familiar"]["all"]["HR@3"] >= methods["ours"]["all"]["HR@3"]
    assert methods["ours-discover"]["new_to_customer"]["HR@3"] >= methods["ours"]["new_to_customer"]["HR@3"]


def test_the_shift_moves_only_never_bought_candidates_after_the_cut_off(engine: SubstituteEngine) -> None:
    from recsys.query.kernels import Feature

    shifted = engine.scorer.shifted(-1.5)
    checked = 0
    for item_id, customer in _queries(engine, 30, seed=8):
        candidates, features, _ = engine.candidates(engine.index_of(item_id), engine.customer_row(customer))
        new = features[:, Feature.own_history] <= 0
        for rerank in (False, True):  # the linear score alone (an X without events) and the re-ranked shortlist
            before = served_scores(engine.scorer, features, 40, rerank)
            after = served_scores(shifted, features, 40, rerank)
            finite = before > -np.inf
            assert np.array_equal(finite, after > -np.inf), "the cut-off and the shortlist do not move"
            assert np.allclose(after[finite & new], before[finite & new] - 1.5)
            assert np.array_equal(after[finite & ~new], before[finite & ~new])
            checked += int((finite & new).any() and (finite & ~new).any())
    assert checked > 10
    assert np.array_equal(served_scores(engine.scorer.shifted(0.0), features), served_scores(engine.scorer, features))
