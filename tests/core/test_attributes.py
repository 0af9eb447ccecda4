"""Catalog attributes: read through a mapping's ``[catalog.attributes]``, carried into the model and its answers,
kept (hard) or preferred (a bounded boost with a reason) on request, targeted by rules, and tabled in the training
report. Checked against the data set's own catalog columns, never against the engine's internals: on the synthetic
retailer (a flag and multi-valued diet tags) and, in the real-data tier, on The Complete Journey with the example
mapping's attributes derived from its product types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys import Dataset, SubstituteEngine, SubstituteFilters, UnknownAttributeError
from recsys.domain.schema import ATTRIBUTE_PREFIX, ATTRIBUTE_VALUE_SEPARATOR, DataValidationError
from recsys.query.attributes import PREFER_AMOUNT
from recsys.query.rules import parse_rules
from training.attributes import attribute_keeping, derive_attributes
from training.mapping import CatalogColumns


def _catalog_values(dataset: Dataset) -> dict[str, dict[str, frozenset[str]]]:
    """attribute -> item id -> its set of values, from the data set's catalog."""
    catalog = dataset.catalog.drop_duplicates("item_id").set_index("item_id")
    return {column.removeprefix(ATTRIBUTE_PREFIX): {
        str(item): frozenset(str(v).split(ATTRIBUTE_VALUE_SEPARATOR)) if pd.notna(v) else frozenset()
        for item, v in catalog[column].items()} for column in catalog.columns if column.startswith(ATTRIBUTE_PREFIX)}


def _queries(engine: SubstituteEngine, n: int = 300) -> list[str]:
    items = engine.model.items
    warm = items[items["n_customers"] > 0]
    return warm.sort_values("n_customers", ascending=False)["item_id"].astype(str).head(n).tolist()


def test_answers_show_the_catalogs_attributes(engine: SubstituteEngine, dataset: Dataset) -> None:
    values = _catalog_values(dataset)
    assert values, "the data set has catalog attributes"
    shown = 0
    for x in _queries(engine, 100):
        answer = engine.substitutes(x, k=5)
        for info in (answer.item, *answer.substitutes):
            expected = {name: sorted(per_item[info.item_id]) for name, per_item in values.items()
                        if per_item[info.item_id]}
            assert info.attributes == expected
            shown += bool(info.attributes)
    assert shown > 100


def test_keep_is_never_broken(engine: SubstituteEngine, dataset: Dataset) -> None:
    """Hundreds of queries, widened lists included: with ``keep`` every substitute has each of X's values; without
    it some would not (so the rule is what holds, not the data)."""
    values = _catalog_values(dataset)
    checked = broken_without = 0
    for name in values:
        for x in _queries(engine):
            wanted = values[name][x]
            kept = engine.substitutes(x, k=10, filters=SubstituteFilters(keep=[name]))
            for s in kept:
                assert wanted <= values[name][s.item_id], (name, x, s.item_id)
                checked += 1
            broken_without += sum(not wanted <= values[name][s.item_id] for s in engine.substitutes(x, k=10))
    assert checked > 500
    assert broken_without > 0


def test_prefer_raises_matches_by_a_bounded_amount_and_says_why(engine: SubstituteEngine, dataset: Dataset) -> None:
    values = _catalog_values(dataset)
    raised = 0
    for name in values:
        for x in _queries(engine, 150):
            mine = {v for v in values[name][x] if v not in ("no",)}
            plain = {s.item_id: s.score for s in engine.substitutes(x, k=50)}
            preferred = engine.substitutes(x, k=50, filters=SubstituteFilters(prefer=[name]))
            for s in preferred:
                keeps = bool(mine) and values[name][x] <= values[name][s.item_id]
                shared = [c for c in s.reason_codes if c["code"] in ("shared_attribute", "shared_flag")]
                assert [c["value"] for c in shared] == sorted(v for v in mine if v in values[name][s.item_id])
                assert all(c["attribute"] == name for c in shared)
                if s.item_id in plain:  # a pin or the re-ranker's shortlist aside, the score moved by the boost
                    change = s.score - plain[s.item_id]
                    assert change == pytest.approx(PREFER_AMOUNT if keeps else 0.0, abs=2e-4)
                    raised += keeps
    assert raised > 50


def test_an_unknown_attribute_is_refused_naming_it(engine: SubstituteEngine) -> None:
    x = _queries(engine, 1)[0]
    with pytest.raises(UnknownAttributeError, match="'colour'"):
        engine.substitutes(x, filters=SubstituteFilters(keep=["colour"]))
    with pytest.raises(UnknownAttributeError, match="'colour'"):
        engine.substitutes(x, filters=SubstituteFilters(prefer=["colour"]))


def test_a_rule_targets_an_attribute_value(engine: SubstituteEngine, dataset: Dataset) -> None:
    values = _catalog_values(dataset)
    name = next(iter(values))
    value = "yes" if any("yes" in v for v in values[name].values()) else sorted(set().union(*values[name].values()))[0]
    engine.use_rules(parse_rules([{"name": "no-" + name, "action": "block",
                                   "target": {"attribute": {name: value}}}]))
    having = [x for x in _queries(engine, len(engine.item_ids)) if value in values[name][x]][:50]
    removed = 0
    for x in _queries(engine, 200) + having:
        answer = engine.substitutes(x, k=10)
        assert all(value not in values[name][s.item_id] for s in answer)
        removed += "no-" + name in answer.rules_applied
    assert removed > 0


def test_derived_values_are_canonical() -> None:
    raw = pd.DataFrame({"flag": ["True", "false", "1", None, " YES "], "tags": ["Vegan; gluten-free", "", None,
                                                                                "vegan;vegan", "a|b"],
                        "type": ["ORGANIC MILK", "MILK", "organic eggs", None, "EGGS"]})
    columns = CatalogColumns.model_validate({"attributes": {
        "flag": "flag", "tags": {"column": "tags", "separator": ";"},
        "organic": {"column": "type", "match": "ORGANIC"}}})
    derived = derive_attributes(raw, columns.attributes, "test")
    as_lists = {name: [None if pd.isna(v) else v for v in values] for name, values in derived.items()}
    assert as_lists == {
        "attribute.flag": ["yes", "no", "yes", None, "yes"],
        "attribute.tags": ["gluten-free|vegan", None, None, "vegan", "a/b"],
        "attribute.organic": ["yes", "no", "yes", None, "no"],
    }


@pytest.mark.parametrize(("attributes", "message"), [
    ({"Diet": "x"}, "attribute name 'Diet'"),
    ({"organic": {"column": "t", "match": "("}}, "not a regular expression"),
    ({"organic": {"column": "t", "match": "A", "separator": ";"}}, "has no separator"),
])
def test_a_bad_attribute_mapping_is_refused(attributes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CatalogColumns.model_validate({"attributes": attributes})


def test_too_many_values_is_refused_naming_the_attribute() -> None:
    raw = pd.DataFrame({"sku": [str(i) for i in range(5000)]})
    columns = CatalogColumns.model_validate({"attributes": {"code": "sku"}})
    with pytest.raises(DataValidationError, match="attribute 'code' .* 5,000 distinct values"):
        derive_attributes(raw, columns.attributes, "test")


def test_the_keeping_table_counts_switches_against_chance() -> None:
    """Two groups of four items; switches that always keep the flag in one group, never in the other."""
    items = pd.DataFrame({"department": "d", "category": ["c1"] * 4 + ["c2"] * 4, "product_type": ["a"] * 4 + ["b"] * 4,
                          "attribute.flag": ["yes", "yes", "no", "no", "yes", "no", "no", "no"]})
    switches = pd.DataFrame({"x": [0, 1, 2, 3] * 10 + [4] * 30, "y": [1, 0, 3, 2] * 10 + [5, 6, 7] * 10})
    row = attribute_keeping(items, switches).iloc[0]
    assert row["switches"] == 70
    assert row["kept"] == pytest.approx(40 / 70)
    # chance: in group a each X has 1 of 3 others with its value; in group b item 4 has none of 3
    assert row["by_chance"] == pytest.approx((40 * (1 / 3) + 30 * 0.0) / 70)
    assert row["lift"] == pytest.approx((40 / 70) / ((40 / 3) / 70))
    assert "c1 (100% vs 33%)" in row["categories"]
    assert np.isclose(row["lift"], 3.0)
