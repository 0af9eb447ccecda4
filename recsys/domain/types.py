"""The engine's public types: the answer, its parts, the request filters and the errors.

Each shape is defined here once: the HTTP layer serialises these as they are (orjson writes dataclasses
natively) and derives its OpenAPI response schemas from them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final, Literal, overload

from pydantic import BaseModel, ConfigDict, Field

#: the most substitutes one answer may hold
MAX_K: Final[int] = 100


class UnknownItemError(LookupError):
    """The item id is not in the model's catalog."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"unknown item {item_id!r}")
        self.item_id = item_id


class UnknownAttributeError(ValueError):
    """A request named a catalog attribute the model's catalog does not have."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        have = f"it has: {', '.join(known)}" if known else "it has none (see [catalog.attributes] in a mapping file)"
        super().__init__(f"unknown attribute {name!r}: the model's catalog has no such attribute; {have}")
        self.name = name


class UnknownStoreError(LookupError):
    """Nothing is known of the store: not in the model, no stock report, no snapshot."""

    def __init__(self, store_id: str) -> None:
        super().__init__(f"unknown store {store_id!r}: not in the model's data or assortment, and no stock was "
                         "ever reported for it")
        self.store_id = store_id


#: a reason as a code with its values, e.g. {"code": "cheaper", "amount": 0.1, "currency": "EUR"}
ReasonCode = dict[str, str | float | int | None]
#: how an item's availability at the queried store is known (see recsys.query.availability)
Availability = Literal["in_stock", "carried", "likely", "unknown", "out_of_stock"]
_AVAILABILITY_HELP: Final[str] = (
    "in_stock: the store reported it in stock; carried: no report, the retailer's assortment lists it there; "
    "likely: no report, the model infers the store carries it from sales; unknown: no evidence (offered only "
    "when the service allows unknown items)")


@dataclass(frozen=True, slots=True)
class AvailabilityPolicy:
    """What an engine offers without evidence (see ``recsys.query.availability``)."""

    allow_unknown_items: bool = False  # offer items with no report and no assortment evidence ("unknown")
    allow_unknown_stores: bool = False  # answer for a store nothing is known of, by the chain-level rules


class Intent(StrEnum):
    """What the list is for. Every intent keeps the same hard rules, filters, reasons and short-list rules;
    for a customer the model does not know, all three give the same list.

    - ``balanced`` (the default): one list for both purposes, the customer's own items and new ones sharing
      the top;
    - ``familiar``: what this customer will most likely accept (a picker substituting in their order): their
      own items of the group first where they fit, then the best new ones;
    - ``discover``: only items the customer never bought, ranked for the chance they try one ("something
      else like this").
    """

    balanced = "balanced"
    familiar = "familiar"
    discover = "discover"

    @classmethod
    def parse(cls, value: str | Intent) -> Intent:
        """``value`` as an intent; raises :class:`UnknownIntentError` for any other name."""
        try:
            return cls(value)
        except ValueError:
            raise UnknownIntentError(value) from None


class UnknownIntentError(ValueError):
    """The intent is not one of :class:`Intent`'s."""

    def __init__(self, intent: object) -> None:
        super().__init__(f"unknown intent {intent!r}: use one of {', '.join(i.value for i in Intent)}")
        self.intent = intent


class SubstituteFilters(BaseModel):
    """Optional request filters; every returned substitute satisfies all that are set. Strict types: JSON
    ``0`` is not ``false`` and ``"5"`` is not a price."""

    model_config = ConfigDict(extra="forbid", strict=True)

    brands: list[str] | None = Field(None, description="only these brands")
    exclude_brands: list[str] | None = Field(None, description="never these brands")
    private_label: bool | None = Field(None, description="true: store brands only; false: no store brands")
    max_price: float | None = Field(None, gt=0, description="highest pack price")
    same_size_family: bool = Field(False, description="only sizes in X's unit family (mass, volume, count...)")
    max_size_ratio: float | None = Field(
        None, ge=1.0, description="size within this factor of X's size (1.5: between 2/3 and 1.5 times)"
    )
    size_alternatives: bool = Field(
        False, description="allow more than 2 pack sizes of one brand's product in the answer"
    )
    keep: list[str] | None = Field(None, max_length=20, description=(
        "catalog attributes a substitute must keep: have each of X's values (nothing to keep where X has none)"))
    prefer: list[str] | None = Field(None, max_length=20, description=(
        "catalog attributes whose match with X raises a substitute (a bounded amount each), with a reason"))

    def attributes(self) -> list[str]:
        """The attributes named in ``keep`` and ``prefer``, once each, in that order (the reasons show them)."""
        return list(dict.fromkeys([*(self.keep or ()), *(self.prefer or ())]))


# The answer's types (ItemInfo, Substitute, Variant, SubstituteList) keep their fields in a __dict__, not in slots:
# orjson writes a dataclass's __dict__ in one pass but reads a slotted one field by field, and a k=10 answer took
# 44 µs to write that way against 9.5 µs now (docs/performance.md).
@dataclass
class ItemInfo:
    """An item as the catalog describes it."""

    item_id: str
    brand: str
    private_label: bool
    department: str
    category: str
    product_type: str
    package_size: Annotated[str | None, Field(description="as printed on the pack")]
    size: Annotated[str | None, Field(description="normalised: g, ml, ct, cm, m², loads")]
    price: Annotated[float | None, Field(description="typical price of one pack")]
    unit_price: Annotated[float | None, Field(description="price per unit_price_per (compares different pack sizes)")]
    unit_price_per: Annotated[str | None, Field(description="e.g. '100 g', '100 ml', '1 ct'")]
    # the catalog's own dict, shared by every answer that shows the item: read it, never change it
    attributes: Annotated[dict[str, list[str]], Field(description=(
        "catalog attributes (the mapping's [catalog.attributes]): name -> values, e.g. {\"organic\": [\"yes\"], "
        "\"diet\": [\"gluten-free\", \"vegan\"]}; attributes the item has no value for are left out"))]


#: :class:`ItemInfo`'s fields in order, as a tuple: what an answer builds its records from
ItemFields = tuple[str, str, bool, str, str, str, str | None, str | None, float | None, float | None, str | None,
                   dict[str, list[str]]]


# Not frozen: an answer builds ten of these, and a frozen dataclass of 19 fields costs 2.5 µs more each to
# construct. Every answer gets its own instances, so changing one changes no other answer.
@dataclass
class Substitute(ItemInfo):
    """One substitute: the item's catalog fields, then how it compares with X."""

    score: float
    reasons: tuple[str, ...]
    size_ratio: Annotated[float | None, Field(description="substitute size / X's size, same unit family only")]
    size_difference: Annotated[str | None, Field(description="substitute size - X's size, e.g. '+113 g' or 'same'")]
    price_difference: Annotated[float | None, Field(description="substitute price - X's price")]
    usual_brand: bool
    bought_before: int
    widened: Annotated[bool, Field(description="from X's parent category, because X's group had too few")]
    availability: Annotated[Availability, Field(description=_AVAILABILITY_HELP)]
    reason_codes: Annotated[tuple[ReasonCode, ...], Field(description=(
        "the reasons as codes with their values, in the order of reasons, for a storefront that renders its own "
        "words: e.g. {\"code\": \"cheaper\", \"amount\": 0.1, \"currency\": \"EUR\"}, {\"code\": \"bought_before\", "
        "\"count\": 3}; the codes are listed in docs/http-api.md"))]
    shopper_price: Annotated[float | None, Field(description=(
        "with price protection on: what the shopper pays, the lower of this price and X's; else null"))]


@dataclass(frozen=True, slots=True)
class ItemMatches:
    """One page of a catalog search (:meth:`recsys.SubstituteEngine.search_items`)."""

    query: str
    total: Annotated[int, Field(description="matching items in all pages")]
    offset: int
    limit: int
    items: Annotated[tuple[ItemInfo, ...], Field(
        description="an item whose id is the query first, then the most popular matches first")]


@dataclass
class Variant:
    """Another pack size of X (same brand and product type) and where it is."""

    item_id: str
    package_size: str | None
    size: str | None
    price: float | None
    availability: Annotated[Availability, Field(description=(
        f"at the queried store; {_AVAILABILITY_HELP}; out_of_stock: reported out, or unlisted in the store's "
        "last whole-store snapshot"))]
    restock_eta: Annotated[datetime | None, Field(description="at the queried store, when out of stock and known")]
    available_at: Annotated[tuple[str, ...], Field(description="other stores or channels that reported it in stock")]


# Not frozen, like Substitute: every answer is a fresh instance, and the service signs it in place (a frozen
# dataclass's dataclasses.replace rebuilt all of it, about 5% of a request's time in the server)
@dataclass
class SubstituteList(Sequence[Substitute]):
    """The ranked substitutes and what a storefront needs to present them."""

    # a Sequence of its substitutes in Python: len(answer), answer[0], for s in answer

    item: ItemInfo
    substitutes: tuple[Substitute, ...]
    personalized: Annotated[bool, Field(description="false when the customer is unknown or not given")]
    intent: Annotated[Intent, Field(description="what the list was ranked for (the request's, balanced by default)")]
    widened: bool
    store_id: str
    store_known: Annotated[bool, Field(description=(
        "false: nothing is known of this store (the service allows unknown stores): chain-level rules apply"))]
    restock_eta: Annotated[datetime | None, Field(description="when X is expected back at this store, if known")]
    available_at: Annotated[tuple[str, ...], Field(description="other stores or channels that reported X in stock")]
    variants: Annotated[tuple[Variant, ...], Field(
        description="X's other pack sizes (same brand and type) and their stock, most popular first")]
    metadata_based: Annotated[bool, Field(
        description="X has no events yet: substitutes from its group, brand, size and price")]
    model_version: str
    rules_applied: Annotated[tuple[str, ...], Field(description=(
        "the merchandising rules that acted on this answer (blocked, boosted or buried a candidate, or pinned "
        "one first), by name"))] = ()
    answer_id: Annotated[str | None, Field(description=(
        "the service's signature of this answer (what was shown, to whom, when): feedback must bring it back; "
        "None from the Python API"))] = None
    experiment: Annotated[str | None, Field(description=(
        "the online experiment this answer was given in; null outside any (and from the Python API)"))] = None
    arm: Annotated[Literal["control", "treatment"] | None, Field(description=(
        "the experiment's arm that gave this answer; null outside any experiment"))] = None

    @overload
    def __getitem__(self, index: int) -> Substitute: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Substitute]: ...
    def __getitem__(self, index: int | slice) -> Substitute | Sequence[Substitute]:
        return self.substitutes[index]

    def __len__(self) -> int:
        return len(self.substitutes)

    def __iter__(self) -> Iterator[Substitute]:
        return iter(self.substitutes)


class UnknownCustomerError(LookupError):
    """The customer id is not in the model."""

    def __init__(self, customer_id: str) -> None:
        super().__init__(f"unknown customer {customer_id!r}")
        self.customer_id = customer_id


@dataclass(frozen=True, slots=True)
class BrandShare:
    brand: str
    share: float  # of the customer's weight in the category


@dataclass(frozen=True, slots=True)
class PriceBand:
    """Weighted percentiles of the prices of the items a customer bought."""

    p25: float
    median: float
    p75: float


@dataclass(frozen=True, slots=True)
class CategoryPreference:
    """What a customer buys in one category (department, category), from their weighted history."""

    department: str
    category: str
    share: Annotated[float, Field(description="of the customer's recency-weighted interactions")]
    purchases: int
    brands: Annotated[tuple[BrandShare, ...], Field(description="up to 3, largest share in this category first")]
    private_label_share: float
    usual_size: Annotated[str | None, Field(description="weighted median size in the customer's main unit family")]
    price_band: PriceBand | None


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """What the engine believes about a customer: ids and derived preferences only."""

    customer_id: str
    model_version: str
    segment: Annotated[str | None, Field(description="RFM: champion, loyal, at risk, new, occasional, browser")]
    recency_days: Annotated[float | None, Field(
        description="days from the last purchase to the end of the training data")]
    baskets: int | None
    spend: float | None
    home_store: str | None
    items: Annotated[int, Field(description="distinct items the customer interacted with")]
    categories: Annotated[tuple[CategoryPreference, ...], Field(description="largest share first")]


@dataclass(frozen=True, slots=True)
class OrderSubstitutes:
    """Substitutes for several unavailable lines of one order, in line order."""

    lines: Annotated[tuple[SubstituteList, ...], Field(description="one answer per known line, in line order")]
    unknown_items: Annotated[tuple[str, ...], Field(description="lines the model does not know (not answered)")]
    personalized: bool
    model_version: str
