"""The engine's public types: the answer, its parts, the request filters and the errors.

Each shape is defined here once; the HTTP layer derives its response schemas from these (``serving.schemas``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NamedTuple, overload

from pydantic import BaseModel, ConfigDict, Field

#: the most substitutes one answer may hold
MAX_K: Final[int] = 100


class UnknownItemError(LookupError):
    """The item id is not in the model's catalog."""

    def __init__(self, item_id: str) -> None:
        super().__init__(f"unknown item {item_id!r}")
        self.item_id = item_id


class SubstituteFilters(BaseModel):
    """Optional request filters; every returned substitute satisfies all that are set. Strict types: JSON
    ``0`` is not ``false`` and ``"5"`` is not a price."""

    model_config = ConfigDict(extra="forbid", strict=True)

    brands: list[str] | None = Field(None, description="only these brands")
    exclude_brands: list[str] | None = Field(None, description="never these brands")
    private_label: bool | None = Field(None, description="true: store brands only; false: no store brands")
    max_price: float | None = Field(None, gt=0, description="highest unit price")
    same_size_family: bool = Field(False, description="only sizes in X's unit family (mass, volume, count...)")
    max_size_ratio: float | None = Field(
        None, ge=1.0, description="size within this factor of X's size (1.5: between 2/3 and 1.5 times)"
    )
    size_alternatives: bool = Field(
        False, description="allow more than 2 pack sizes of one brand's product in the answer"
    )


class ItemInfo(NamedTuple):
    """An item as the catalog describes it (immutable: the engine hands out the same instance to every query)."""

    item_id: str
    brand: str
    private_label: bool
    department: str
    category: str
    product_type: str
    package_size: str | None
    size: str | None
    price: float | None
    unit_price: float | None  # price per ``unit_price_per``: compares packs of different sizes
    unit_price_per: str | None


class Substitute(NamedTuple):
    """One answer: the item's :class:`ItemInfo` fields, in that order, then how it compares with X.

    A named tuple, not a dataclass: an answer builds ten of these, and a frozen dataclass of 19 fields costs
    2.5 µs more each to construct (a test keeps the item fields equal to ItemInfo's)."""

    item_id: str
    brand: str
    private_label: bool
    department: str
    category: str
    product_type: str
    package_size: str | None
    size: str | None
    price: float | None
    unit_price: float | None
    unit_price_per: str | None
    score: float
    reasons: tuple[str, ...]
    size_ratio: float | None
    size_difference: str | None
    price_difference: float | None
    usual_brand: bool
    bought_before: int
    widened: bool


class Variant(NamedTuple):
    """Another pack size of X (same brand and product type) and where it is."""

    item_id: str
    package_size: str | None
    size: str | None
    price: float | None
    in_stock: bool  # at the queried store (unreported counts as in stock)
    restock_eta: datetime | None  # at the queried store, when out of stock and known
    available_at: tuple[str, ...]  # other stores or channels that reported it in stock


@dataclass(frozen=True, slots=True)
class SubstituteList(Sequence[Substitute]):
    """The ranked substitutes plus what the storefront needs to present them. Behaves as a sequence."""

    item: ItemInfo
    substitutes: tuple[Substitute, ...]
    personalized: bool
    widened: bool
    model_version: str
    store_id: str
    restock_eta: datetime | None  # of X at the queried store, when out of stock and known
    available_at: tuple[str, ...]  # other stores or channels that reported X in stock
    variants: tuple[Variant, ...]  # X's other pack sizes, most popular first
    metadata_based: bool  # X has no events yet: its substitutes come from its group, brand, size and price

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
class CategoryPreference:
    """What a customer buys in one category (department, category), from their weighted history."""

    department: str
    category: str
    share: float  # of the customer's recency-weighted interactions
    purchases: int
    brands: tuple[tuple[str, float], ...]  # up to 3 (brand, share in this category), largest first
    private_label_share: float
    usual_size: str | None  # weighted median size in the customer's main unit family here
    price_band: tuple[float, float, float] | None  # weighted 25th, 50th, 75th percentile of item prices


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """What the engine believes about a customer: ids and derived preferences only."""

    customer_id: str
    model_version: str
    segment: str | None  # RFM: champion, loyal, at risk, new, occasional, browser
    recency_days: float | None  # days from the last purchase to the end of the training data
    baskets: int | None
    spend: float | None
    home_store: str | None
    items: int  # distinct items interacted with
    categories: tuple[CategoryPreference, ...]  # largest share first


@dataclass(frozen=True, slots=True)
class OrderSubstitutes:
    """Substitutes for several unavailable lines of one order, in line order."""

    lines: tuple[SubstituteList, ...]
    unknown_items: tuple[str, ...]
    personalized: bool
    model_version: str
