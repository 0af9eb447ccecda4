"""Merchandising rules at query time: block, bury, boost and pin, within their scope and time, and never over the
hard rules or a request's filters."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from recsys import SubstituteEngine, SubstituteFilters
from recsys.query.rules import MAX_AMOUNT, Rule


def _sample(engine: SubstituteEngine, n: int, seed: int = 0) -> list[str]:
    items = engine.model.items
    return items.loc[items["n_customers"] > 0, "item_id"].astype(str).sample(n, random_state=seed).tolist()


def _answers(engine: SubstituteEngine, item_ids: list[str], **kwargs: object) -> dict[str, list[str]]:
    return {i: [s.item_id for s in engine.substitutes(i, **kwargs)] for i in item_ids}  # type: ignore[arg-type]


def _busiest_category_brand(engine: SubstituteEngine, item_ids: list[str]) -> tuple[str, str]:
    """A category and a brand that its answers offer often."""
    offered = Counter((s.category, s.brand) for i in item_ids for s in engine.substitutes(i))
    (category, brand), _ = offered.most_common(1)[0]
    return category, brand


def test_block_removes_a_brand_in_its_scope_and_nowhere_else(engine: SubstituteEngine) -> None:
    sample = _sample(engine, 300)
    category, brand = _busiest_category_brand(engine, sample)
    items = engine.model.items
    in_scope = items.loc[(items["category"] == category) & (items["n_customers"] > 0), "item_id"].astype(str)
    in_scope = in_scope.sample(min(len(in_scope), 60), random_state=0).tolist()
    queries = list(dict.fromkeys([*in_scope, *sample]))
    before = _answers(engine, queries)
    engine.use_rules([Rule(name="no-brand", action="block", scope={"category": category}, target={"brand": brand})])
    assert len(in_scope) >= 10
    for item_id in queries:
        answer = engine.substitutes(item_id)
        brands = {s.brand for s in answer}
        if engine.item_info(item_id).category == category:
            assert brand not in brands
            had = any(engine.item_info(s).brand == brand for s in before[item_id])
            assert ("no-brand" in answer.rules_applied) == had
        else:
            assert [s.item_id for s in answer] == before[item_id] and answer.rules_applied == ()


def test_pin_puts_its_item_first_wherever_eligible_and_nowhere_else(engine: SubstituteEngine) -> None:
    queries = _sample(engine, 200, seed=1)
    x = next(i for i in queries if len(engine.substitutes(i, k=10)) >= 5)
    pinned = engine.substitutes(x, k=10)[4].item_id  # fifth: it has to move
    engine.use_rules([Rule(name="pin-it", action="pin", target={"item_id": pinned})])
    first = 0
    for item_id in [x, *queries]:
        answer = engine.substitutes(item_id, k=5)
        candidates, _, _ = engine.candidates(engine.index_of(item_id), None)
        eligible = engine.index_of(pinned) in set(candidates.tolist()) and item_id != pinned
        ids = [s.item_id for s in answer]
        if eligible:
            first += 1
            assert ids[0] == pinned and answer.rules_applied == ("pin-it",) and len(ids) <= 5
            assert [s.score for s in answer] == sorted((s.score for s in answer), reverse=True)
        else:
            assert pinned not in ids and answer.rules_applied == ()
    assert first >= 1
    # a filter that excludes it wins: the pin is not eligible there
    brand = engine.item_info(pinned).brand
    filtered = engine.substitutes(x, k=5, filters=SubstituteFilters(exclude_brands=[brand]))
    assert pinned not in [s.item_id for s in filtered] and filtered.rules_applied == ()
    # nor in the cart
    assert pinned not in [s.item_id for s in engine.substitutes(x, k=5, exclude=[pinned])]


@pytest.mark.parametrize("action", ["boost", "bury"])
def test_boost_and_bury_move_by_their_amount(engine: SubstituteEngine, action: str) -> None:
    queries = _sample(engine, 150, seed=2)
    category, brand = _busiest_category_brand(engine, queries)
    in_scope = [i for i in queries if engine.item_info(i).category == category]
    before = {i: engine.substitutes(i, k=20) for i in in_scope}
    amount = 0.3
    engine.use_rules([Rule(name="move", action=action, scope={"category": category}, target={"brand": brand},
                           amount=amount)])
    sign = 1 if action == "boost" else -1
    moved = 0
    for item_id in in_scope:
        old = {s.item_id: s for s in before[item_id]}
        answer = engine.substitutes(item_id, k=20)
        for position, s in enumerate(answer):
            if s.item_id in old:
                change = round(s.score - old[s.item_id].score, 3)
                assert change == (round(sign * amount, 3) if s.brand == brand else 0), (s.item_id, change)
            if s.brand == brand and s.item_id in old:
                was = [o.item_id for o in before[item_id]].index(s.item_id)
                assert position <= was if action == "boost" else position >= was
                moved += position != was
    assert moved > 0


def test_a_rule_applies_only_while_it_is_active(engine: SubstituteEngine) -> None:
    queries = _sample(engine, 200, seed=3)
    category, brand = _busiest_category_brand(engine, queries)
    item_id = next(i for i in queries if engine.item_info(i).category == category
                   and brand in {s.brand for s in engine.substitutes(i)})
    now = datetime.now(UTC)
    for starts, ends, applies in ((now - timedelta(days=2), now - timedelta(days=1), False),
                                  (now + timedelta(days=1), None, False), (now - timedelta(days=1), None, True)):
        engine.use_rules([Rule(name="timed", action="block", target={"brand": brand}, starts=starts, ends=ends)])
        answer = engine.substitutes(item_id)
        assert (brand not in {s.brand for s in answer}) == applies and (answer.rules_applied == ("timed",)) == applies


def test_a_hundred_rules_out_of_scope_change_nothing(engine: SubstituteEngine) -> None:
    queries = _sample(engine, 60, seed=4)
    before = _answers(engine, queries)
    engine.use_rules([Rule(name=f"elsewhere-{n}", action="boost", scope={"store_id": f"store-{n}"},
                           target={"private_label": True}) for n in range(100)])
    assert _answers(engine, queries) == before


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "x", "action": "boost", "target": {}}, "target"),
    ({"name": "x", "action": "shout", "target": {"brand": "b"}}, "action"),
    ({"name": "x", "action": "pin", "target": {"brand": "b"}}, "target.item_id"),
    ({"name": "x", "action": "boost", "target": {"brand": "b"}, "amount": MAX_AMOUNT * 2}, "amount"),
    ({"name": "x y", "action": "block", "target": {"brand": "b"}}, "name"),
    ({"name": "x", "action": "block", "target": {"brand": "b"}, "scope": {"shelf": "3"}}, "shelf"),
    ({"name": "x", "action": "block", "target": {"brand": "b"}, "starts": "2026-12-02T00:00:00Z",
      "ends": "2026-12-01T00:00:00Z"}, "ends"),
])
def test_an_invalid_rule_is_refused_naming_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        Rule.model_validate(body)
