"""Presenting an answer: the substitutes' reasons and how each compares with X (size, price, brand), X's
other pack sizes and where X is available. Everything an answer shows is prepared per item at load."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, NamedTuple, TypeVar

import numpy as np
import pandas as pd

from recsys.domain.sizes import UNIT_PRICE_BASIS, format_quantity
from recsys.domain.types import ItemFields, ItemInfo, ReasonCode, Substitute, Variant
from recsys.model.data import ModelData
from recsys.query.attributes import YES
from recsys.query.availability import NAMES, OUT_OF_STOCK, StoreAvailability
from recsys.query.items import SAME_SIZE_TOLERANCE, ItemTable
from recsys.query.kernels import Feature, SparseRows
from recsys.query.reasons import Messages

#: the features that presenting an answer reads, in the order :meth:`Presenter.present` unpacks them
_REASON_FEATURES: Final[np.ndarray] = np.array([
    Feature.brand_affinity, Feature.same_brand, Feature.own_accepted, Feature.accepted_instead,
    Feature.switched_to, Feature.bought_instead, Feature.viewed_together, Feature.own_history], dtype=np.int64)
#: the reasons whose texts have no values
_STATIC_REASONS: Final[tuple[str, ...]] = ("usual_brand", "same_brand", "store_brand", "accepted_before",
                                          "accepted_instead", "bought_instead", "viewed_together", "same_price",
                                          "new_in_catalog")
#: thresholds above which a feature becomes a shopper-facing reason
USUAL_BRAND_SHARE: Final[float] = 0.3
BOUGHT_INSTEAD_MIN: Final[float] = 0.05

ValueT = TypeVar("ValueT")


#: most entries a presenter keeps in each of its caches: reason texts with values, comparisons of two sizes and of
#: two prices (answers repeat the common ones)
_COMPARISONS_KEPT: Final[int] = 65_536


class _SizeComparison(NamedTuple):
    ratio: float  # the substitute's size over X's, to 3 significant digits
    difference: str  # "same", or the substitute's size minus X's, signed, in the family's display unit
    reason: str
    code: ReasonCode  # shared by every answer that shows it: read-only


class _PriceComparison(NamedTuple):
    difference: float  # the substitute's price minus X's
    shopper_price: float | None  # with price protection: the lower of the two
    reasons: tuple[str, ...]
    codes: tuple[ReasonCode, ...]  # shared by every answer that shows them: read-only


def _shared(values: Iterable[ValueT]) -> list[ValueT]:
    """``values`` with all equal values as one object. A catalog repeats its brands, categories, sizes and
    prices across items; sharing them keeps an answer's reads in a few hot cache lines instead of a cold object per
    field and item (an answer copies the references of its substitutes' fields, which touches every object)."""
    pool: dict[ValueT, ValueT] = {}
    nan: ValueT | None = None  # NaN equals nothing, itself included: one object stands for all of them
    shared = []
    for value in values:
        if value != value:
            nan = value if nan is None else nan
            shared.append(nan)
        else:
            shared.append(pool.setdefault(value, value))
    return shared


class _Shown(NamedTuple):
    """What presenting an item as a substitute reads, as Python values (numpy scalars cost more to read), in
    one record per item: an answer's ten substitutes then miss the cache once each, not once per field."""

    fields: ItemFields  # ItemInfo's fields in order: a Substitute starts with them
    private_label: bool
    family: int  # size family code, -1: unknown
    log_size: float  # NaN: unknown
    size: float
    family_name: str | None
    cents: int | None  # the price in whole cents: differences are exact, and their reasons can be cached
    cold: bool  # no events: new in the catalog
    size_label: str | None


class Presenter:
    """Turns ranked candidates into the answer's records; built once per model."""

    def __init__(self, model: ModelData, items: ItemTable, availability: StoreAvailability,
                 customer_items: SparseRows) -> None:
        self.model, self.items, self.availability, self.customer_items = model, items, availability, customer_items
        self.use_messages(Messages(), price_protection=False)
        rows = self._catalog_rows(items.size_display())
        self.infos = [ItemInfo(*row) for row in rows]
        log_sizes = _shared(items.log_size.tolist())
        self._shown = [
            _Shown(row, info.private_label, family, log_size, size, family_name, cents, cold, label)
            for info, row, family, log_size, size, family_name, cents, cold, label in zip(
                self.infos, rows, items.family_codes.tolist(), log_sizes,
                _shared(math.exp(log_size) for log_size in log_sizes), _shared(items.families),
                _shared(None if info.price is None else round(info.price * 100) for info in self.infos), items.cold,
                _shared(info.package_size or info.size for info in self.infos), strict=True)
        ]
        # per item, its variants' index and catalog fields (Variant's first four): only their stock is read per query
        self._variant_fields = [tuple((v, (self.infos[v].item_id, self.infos[v].package_size, self.infos[v].size,
                                           self.infos[v].price)) for v in variants)
                                for variants in items.variants()]

    def _catalog_rows(self, size_display: list[str | None]) -> list[ItemFields]:
        """Per item, :class:`ItemInfo`'s fields in order."""
        items, table = self.model.items, self.items
        sizes = [None if t is None or pd.isna(t) else " ".join(str(t).split())
                 for t in items["package_size"].astype(object).tolist()]
        prices = [None if math.isnan(p) else round(p, 2) for p in table.price.tolist()]
        families = table.families
        basis = np.asarray([UNIT_PRICE_BASIS.get(f, np.nan) if f is not None else np.nan for f in families])
        per_unit = table.price / np.exp(table.log_size.astype(np.float64)) * basis
        unit_prices = [None if not math.isfinite(u) or u <= 0 else float(f"{u:.3g}") for u in per_unit.tolist()]
        unit_per = [format_quantity(b, f) if u is not None and f is not None else None
                    for u, b, f in zip(unit_prices, basis.tolist(), families, strict=True)]
        columns = zip(items["item_id"].astype(str).tolist(), _shared(items["brand"].astype(str).tolist()),
                      items["private_label"].astype(bool).tolist(), _shared(items["department"].astype(str).tolist()),
                      _shared(items["category"].astype(str).tolist()),
                      _shared(items["product_type"].astype(str).tolist()), _shared(sizes), _shared(size_display),
                      _shared(prices), _shared(unit_prices), _shared(unit_per), table.attributes.of_item, strict=True)
        return list(columns)

    def item(self, x: int) -> ItemInfo:
        """Item ``x``'s catalog record, a fresh instance (the caller may keep or change it)."""
        return ItemInfo(*self._shown[x].fields)

    def use_messages(self, messages: Messages, price_protection: bool) -> None:
        """Write reasons in ``messages``' locale and currency from now on; ``price_protection``: a substitute that
        costs more than X is sold at X's price (``shopper_price``, with a reason that says so)."""
        self.messages, self.price_protection = messages, price_protection
        # the texts of the reasons without values, and a cache of those with values (answers repeat the common
        # sizes and price differences): the answer's hot loop reads dictionaries, it formats nothing it has seen
        self._static = {code: messages.text(code) for code in _STATIC_REASONS}
        self._texts: dict[tuple[str, object, object], str] = {}
        # how two sizes and two prices compare, with their reasons: one dictionary read per substitute and kind
        self._sizes: dict[tuple[int, float, float, str | None, str | None], _SizeComparison] = {}
        self._prices: dict[tuple[int, int], _PriceComparison] = {}
        # the codes without values, one dict each, shared by every answer (read-only, like the texts)
        self._static_codes: dict[str, ReasonCode] = {code: {"code": code} for code in _STATIC_REASONS}

    def _text(self, code: str, first: object = None, second: object = None) -> str:
        """A reason's text with its values, cached."""
        key = (code, first, second)
        text = self._texts.get(key)
        if text is None:
            messages = self.messages
            if code in ("cheaper", "more_expensive", "price_protected"):
                text = messages.text(code, amount=first)
            elif code == "same_size":
                text = messages.text(code, size=first)
            elif code == "other_size":
                text = messages.text(code, size=first, item_size=second)
            elif code == "same_type":
                text = messages.text(code, product_type=str(first).lower())
            elif code == "bought_before":
                text = messages.text(code, count=first)
            elif code in ("shared_attribute", "shared_flag"):
                text = messages.text(code, attribute=str(first).replace("_", " "), value=second)
            else:  # widened
                text = messages.text(code, category=first, product_type=second)
            if len(self._texts) < _COMPARISONS_KEPT:
                self._texts[key] = text
        return text

    def _compare_sizes(self, family: int, log_size: float, x_log_size: float, size: float, x_size: float,
                       family_name: str | None, label: str | None, x_label: str | None) -> _SizeComparison:
        """How a substitute's size compares with X's (of the same unit family), kept for the next answers."""
        log_ratio = log_size - x_log_size
        if abs(log_ratio) <= SAME_SIZE_TOLERANCE:
            compared = _SizeComparison(float(f"{math.exp(log_ratio):.3g}"), "same", self._text("same_size", label),
                                       {"code": "same_size", "size": label})
        else:
            difference = size - x_size
            assert family_name is not None  # a known family has a name
            compared = _SizeComparison(
                float(f"{math.exp(log_ratio):.3g}"),
                ("+" if difference > 0 else "-") + format_quantity(abs(difference), family_name),
                self._text("other_size", label, x_label), {"code": "other_size", "size": label, "item_size": x_label})
        if len(self._sizes) < _COMPARISONS_KEPT:
            self._sizes[(family, log_size, x_log_size, label, x_label)] = compared
        return compared

    def _compare_prices(self, cents: int, x_cents: int) -> _PriceComparison:
        """How a substitute's price (in cents) compares with X's, with price protection if it is on, kept for the
        next answers."""
        reasons: list[str] = []
        codes: list[ReasonCode] = []
        if cents == x_cents:
            reasons.append(self._static["same_price"])
            codes.append(self._static_codes["same_price"])
        else:
            difference = "cheaper" if cents < x_cents else "more_expensive"
            amount = abs(cents - x_cents) / 100
            reasons.append(self._text(difference, amount))
            codes.append({"code": difference, "amount": amount, "currency": self.messages.currency})
        shopper_price = None
        if self.price_protection:
            shopper_price = min(cents, x_cents) / 100
            if cents > x_cents:
                reasons.append(self._text("price_protected", shopper_price))
                codes.append({"code": "price_protected", "amount": shopper_price, "currency": self.messages.currency})
        # (cents - x_cents) / 100: the same float as round(price - x_price, 2)
        compared = _PriceComparison((cents - x_cents) / 100, shopper_price, tuple(reasons), tuple(codes))
        if len(self._prices) < _COMPARISONS_KEPT:
            self._prices[(cents, x_cents)] = compared
        return compared

    def present(self, x: int, items: np.ndarray, scores: np.ndarray, features: np.ndarray, widened: np.ndarray,
                cust_row: int | None, availability: np.ndarray, attributes: Sequence[str] = ()
                ) -> tuple[Substitute, ...]:
        """The answer's substitutes, with their reasons (codes and texts, in the same order) and how they compare
        with X, from each item's :class:`_Shown` record and the reason features; ``availability``: every item's
        code at the store (:data:`recsys.query.availability.NAMES`); ``attributes``: the catalog attributes the
        request asked to keep or prefer, whose values shared with X become reasons."""
        personal = cust_row is not None
        reason_features = features.take(_REASON_FEATURES, axis=1).tolist()
        # purchase counts, looked up only when some substitute was bought before (own_history > 0)
        bought = (self.customer_items.lookup(cust_row, items)[:, 1].astype(np.int64).tolist()
                  if cust_row is not None and any(row[-1] > 0 for row in reason_features) else [0] * len(items))
        shown = self._shown
        x_fields, x_private_label, x_family, x_log_size, x_size, _, x_cents, _, x_label = shown[x]
        x_type = x_fields[5]
        text, static, static_codes = self._text, self._static, self._static_codes
        sizes, prices = self._sizes, self._prices
        same_type = text("same_type", x_type)
        same_type_code: ReasonCode = {"code": "same_type", "product_type": x_type}  # one per answer
        results = []
        # the features that become reasons come unpacked, in _REASON_FEATURES order (converting all 27 costs more)
        for c, score, (brand_share, same_brand, own_accepted, accepted, switched, bought_instead, viewed, _), \
                is_widened, n, code in zip(items.tolist(), scores.tolist(), reason_features, widened.tolist(), bought,
                                           availability[items].tolist(), strict=True):
            record: _Shown = shown[c]  # c comes from tolist(): typed, so that the record's fields are too
            fields, private_label, family, log_size, size, family_name, cents, cold, label = record
            reasons: list[str] = [] if is_widened else [same_type]
            codes: list[ReasonCode] = [] if is_widened else [same_type_code]
            size_ratio = size_difference = None
            if family == x_family and family >= 0:
                sized = (sizes.get((family, log_size, x_log_size, label, x_label)) or
                         self._compare_sizes(family, log_size, x_log_size, size, x_size, family_name, label, x_label))
                size_ratio, size_difference, size_reason, size_code = sized
                reasons.append(size_reason)
                codes.append(size_code)
            if attributes:
                for name, value in self.items.attributes.shared(x, c, attributes):
                    shared = "shared_flag" if value == YES else "shared_attribute"
                    reasons.append(text(shared, name, value))
                    codes.append({"code": shared, "attribute": name, "value": value})
            usual_brand = personal and brand_share >= USUAL_BRAND_SHARE
            if usual_brand:
                reasons.append(static["usual_brand"])
                codes.append(static_codes["usual_brand"])
            elif same_brand:
                reasons.append(static["same_brand"])
                codes.append(static_codes["same_brand"])
            if private_label and not x_private_label:
                reasons.append(static["store_brand"])
                codes.append(static_codes["store_brand"])
            if own_accepted > 0:
                reasons.append(static["accepted_before"])
                codes.append(static_codes["accepted_before"])
            if n:
                reasons.append(text("bought_before", n))
                codes.append({"code": "bought_before", "count": n})
            if accepted >= BOUGHT_INSTEAD_MIN:
                reasons.append(static["accepted_instead"])
                codes.append(static_codes["accepted_instead"])
            if switched >= BOUGHT_INSTEAD_MIN or bought_instead >= BOUGHT_INSTEAD_MIN:
                reasons.append(static["bought_instead"])
                codes.append(static_codes["bought_instead"])
            if viewed >= BOUGHT_INSTEAD_MIN:
                reasons.append(static["viewed_together"])
                codes.append(static_codes["viewed_together"])
            price_difference = shopper_price = None
            if cents is not None and x_cents is not None:
                priced = prices.get((cents, x_cents)) or self._compare_prices(cents, x_cents)
                price_difference, shopper_price, price_reasons, price_codes = priced
                reasons += price_reasons
                codes += price_codes
            if cold:
                reasons.append(static["new_in_catalog"])
                codes.append(static_codes["new_in_catalog"])
            if is_widened:
                category = fields[4]
                reasons.append(text("widened", category, x_type))
                codes.append({"code": "widened", "category": category, "product_type": x_type})
            results.append(Substitute(*fields, round(score, 4), tuple(reasons), size_ratio, size_difference,
                                      price_difference, usual_brand, n, is_widened, NAMES[code], tuple(codes),
                                      shopper_price))
        return tuple(results)

    def stock_elsewhere(self, item_id: str, store: str) -> tuple[datetime | None, tuple[str, ...]]:
        """(restock date at ``store`` if reported out and known, other places that report it in stock)."""
        state = self.availability.inventory.state(store, item_id)
        eta = state.restock_eta if state is not None and not state.in_stock else None
        elsewhere = self.availability.inventory.in_stock_at(item_id)
        if store in elsewhere:
            elsewhere = tuple(s for s in elsewhere if s != store)
        return eta, elsewhere

    def variants(self, x: int, store: str) -> tuple[Variant, ...]:
        """Up to :data:`recsys.query.items.MAX_VARIANTS` other pack sizes of X, with how each is available at
        ``store``."""
        codes = self.availability.codes(store)
        variants = []
        for v, fields in self._variant_fields[x]:
            code = codes.item(v)
            eta, elsewhere = self.stock_elsewhere(fields[0], store)
            variants.append(Variant(*fields, NAMES[code], eta if code == OUT_OF_STOCK else None, elsewhere))
        return tuple(variants)
