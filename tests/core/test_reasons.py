"""Reasons any storefront can show: codes with their values beside the texts, the texts in a locale with the
catalog's currency, and price protection."""

import pytest

from recsys import SubstituteEngine
from recsys.query.reasons import REASON_CODES, Messages, locales


def _answers(engine: SubstituteEngine, n: int = 120, seed: int = 1) -> list:
    items = engine.model.items
    ids = items.loc[items["n_customers"] > 0, "item_id"].astype(str).sample(n, random_state=seed).tolist()
    customer = str(engine.model.customers[3])
    return [engine.substitutes(i, customer_id=customer if k % 2 else None, k=10) for k, i in enumerate(ids)]


def test_every_reason_has_its_code_with_the_answers_own_values(engine: SubstituteEngine) -> None:
    seen = set()
    for answer in _answers(engine):
        for s in answer:
            codes = [c["code"] for c in s.reason_codes]
            assert len(codes) == len(s.reasons) and set(codes) <= set(REASON_CODES)
            seen.update(codes)
            by_code = {c["code"]: c for c in s.reason_codes}
            assert ("same_size" in by_code) == (s.size_difference == "same")
            if s.price_difference is not None and s.price_difference != 0:
                code = by_code["cheaper" if s.price_difference < 0 else "more_expensive"]
                assert code["amount"] == pytest.approx(abs(s.price_difference)) and code["currency"] == "USD"
            assert by_code.get("bought_before", {}).get("count", 0) == s.bought_before
            assert ("usual_brand" in by_code) == s.usual_brand and ("widened" in by_code) == s.widened
            if not s.widened:
                assert by_code["same_type"]["product_type"] == answer.item.product_type
            assert s.shopper_price is None, "no price protection unless asked for"
    assert {"same_type", "same_size", "cheaper", "more_expensive", "bought_before"} <= seen


def test_another_locale_and_currency_change_the_texts_not_the_codes(engine: SubstituteEngine) -> None:
    english = _answers(engine, 60)
    engine.use_reasons(Messages("de", "EUR"))
    german = _answers(engine, 60)
    for before, after in zip(english, german, strict=True):
        assert [s.item_id for s in before] == [s.item_id for s in after]
        for e, g in zip(before, after, strict=True):
            assert [c["code"] for c in e.reason_codes] == [c["code"] for c in g.reason_codes]
            assert all("$" not in text for text in g.reasons), g.reasons
            for code, text in zip(g.reason_codes, g.reasons, strict=True):
                if code["code"] == "cheaper":
                    assert code["currency"] == "EUR"
                    assert text == f"{code['amount']:.2f} € günstiger".replace(".", ",")
                if code["code"] == "same_brand":
                    assert text == "gleiche Marke"


def test_price_protection_charges_no_more_than_the_item_ordered(engine: SubstituteEngine) -> None:
    engine.use_reasons(Messages("en", "EUR"), price_protection=True)
    dearer = 0
    for answer in _answers(engine):
        x_price = answer.item.price
        for s in answer:
            if s.price is None or x_price is None:
                assert s.shopper_price is None
                continue
            assert s.shopper_price == pytest.approx(min(s.price, x_price))
            protected = [c for c in s.reason_codes if c["code"] == "price_protected"]
            if s.price > x_price:
                dearer += 1
                assert protected == [{"code": "price_protected", "amount": pytest.approx(x_price), "currency": "EUR"}]
                assert f"you pay €{x_price:.2f}, the price of the item you ordered" in s.reasons
            else:
                assert not protected
    assert dearer > 20


def test_a_locale_without_messages_or_a_currency_that_is_no_iso_code_is_refused() -> None:
    assert {"en", "de"} <= set(locales())
    with pytest.raises(ValueError, match="unknown locale 'xx'"):
        Messages("xx")
    with pytest.raises(ValueError, match="ISO 4217"):
        Messages("en", "euro")
