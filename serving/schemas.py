"""HTTP request and response bodies (the OpenAPI schema at /docs comes from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from recsys import SubstituteFilters
from recsys.engine import MAX_K
from recsys.inventory import ONLINE

MAX_ORDER_LINES = 200


def _json_integer(value: object) -> object:
    """JSON Schema's integer: 3 and 3.0, but not "3", true or 3.5."""
    if isinstance(value, bool) or isinstance(value, str):
        raise ValueError("must be a JSON integer")
    return value


def _json_text(value: object) -> object:
    """Dates as RFC 3339 text only, not numbers (which pydantic would read as Unix time)."""
    if value is not None and not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
JsonDateTime = Annotated[datetime | None, BeforeValidator(_json_text)]
#: an item, customer or store id
Id = Annotated[str, Field(min_length=1, max_length=256)]


class _QueryContext(BaseModel):
    """Who asks and where: shared by the single-item and the whole-order request."""

    model_config = ConfigDict(extra="forbid")

    customer_id: Id | None = None
    store_id: Id | None = Field(None, description=f"default: {ONLINE!r}")
    filters: SubstituteFilters | None = None


class SubstituteRequest(_QueryContext):
    item_id: Id = Field(description="the unavailable item X")
    k: JsonInt = Field(10, ge=1, le=MAX_K)
    exclude: list[str] = Field(default_factory=list, max_length=10_000, description="e.g. the cart's items")


class OrderSubstituteRequest(_QueryContext):
    items: list[Id] = Field(
        min_length=1, max_length=MAX_ORDER_LINES, description="the order's unavailable items, in line order"
    )
    order: list[str] = Field(default_factory=list, max_length=10_000,
                             description="every other item in the order or cart: never proposed")
    k: JsonInt = Field(3, ge=1, le=MAX_K, description="substitutes per line")


class ItemOut(BaseModel):
    item_id: str
    brand: str
    private_label: bool
    department: str
    category: str
    product_type: str
    package_size: str | None = Field(description="as printed on the pack")
    size: str | None = Field(description="normalised: g, ml, ct, cm, m², loads")
    price: float | None = Field(description="typical price of one pack")
    unit_price: float | None = Field(description="price per unit_price_per (compares different pack sizes)")
    unit_price_per: str | None = Field(description="e.g. '100 g', '100 ml', '1 ct'")


class SubstituteOut(ItemOut):
    score: float
    reasons: list[str]
    size_ratio: float | None = Field(description="substitute size / X's size, same unit family only")
    size_difference: str | None = Field(description="substitute size - X's size, e.g. '+113 g' or 'same'")
    price_difference: float | None = Field(description="substitute price - X's price")
    usual_brand: bool
    bought_before: int
    widened: bool = Field(description="from X's parent category, because X's group had too few")


class VariantOut(BaseModel):
    item_id: str
    package_size: str | None
    size: str | None
    price: float | None
    in_stock: bool = Field(description="at the queried store (not reported out of stock)")
    restock_eta: datetime | None
    available_at: list[str] = Field(description="other stores or channels that reported it in stock")


class SubstitutesResponse(BaseModel):
    item: ItemOut
    substitutes: list[SubstituteOut]
    personalized: bool = Field(description="false when the customer is unknown or not given")
    widened: bool
    store_id: str
    restock_eta: datetime | None = Field(description="when X is expected back at this store, if known")
    available_at: list[str] = Field(description="other stores or channels that reported X in stock")
    variants: list[VariantOut] = Field(description="X's other pack sizes (same brand and type) and their stock")
    metadata_based: bool = Field(description="X has no events yet: substitutes from its group, brand, size, price")
    model_version: str


class OrderSubstitutesResponse(BaseModel):
    lines: list[SubstitutesResponse] = Field(description="one answer per known line, in line order")
    unknown_items: list[str] = Field(description="lines the model does not know (not answered)")
    personalized: bool
    model_version: str


class FeedbackIn(BaseModel):
    """At least one of ``accepted``, ``chosen`` or a non-empty ``rejected``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["accepted"], "properties": {"accepted": {"type": "string"}}},
        {"required": ["chosen"], "properties": {"chosen": {"type": "string"}}},
        {"required": ["rejected"], "properties": {"rejected": {"minItems": 1}}},
    ]})

    item_id: Id = Field(description="the unavailable item X")
    shown: list[Id] = Field(default_factory=list, max_length=MAX_K, description="substitutes shown, in order")
    accepted: Id | None = Field(None, description="the shown substitute the shopper accepted")
    rejected: list[Id] = Field(default_factory=list, max_length=MAX_K, description="shown substitutes rejected")
    chosen: Id | None = Field(None, description="a manual choice (picker or shopper), shown or not")
    customer_id: Id | None = None
    store_id: Id | None = None
    source: Literal["shopper", "picker"] = "shopper"
    model_version: str | None = Field(None, max_length=64, description="the model_version of the answer shown")

    @model_validator(mode="after")
    def _decides_something(self) -> FeedbackIn:
        if self.accepted is None and self.chosen is None and not self.rejected:
            raise ValueError("feedback needs accepted, chosen or at least one rejected item")
        return self


class FeedbackRecorded(BaseModel):
    id: int = Field(description="the stored feedback's id")


class BrandShare(BaseModel):
    brand: str
    share: float


class PriceBand(BaseModel):
    p25: float
    median: float
    p75: float


class CategoryPreferenceOut(BaseModel):
    department: str
    category: str
    share: float = Field(description="of the customer's recency-weighted interactions")
    purchases: int
    brands: list[BrandShare] = Field(description="up to 3, largest share in this category first")
    private_label_share: float
    usual_size: str | None
    price_band: PriceBand | None = Field(description="weighted percentiles of the prices of the items bought")


class CustomerProfileOut(BaseModel):
    customer_id: str
    model_version: str
    segment: str | None = Field(description="RFM: champion, loyal, at risk, new, occasional, browser")
    recency_days: float | None = Field(description="days from the last purchase to the end of the training data")
    baskets: int | None
    spend: float | None
    home_store: str | None
    items: int = Field(description="distinct items the customer interacted with")
    categories: list[CategoryPreferenceOut]


class StockUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: Id
    store_id: Id = ONLINE
    in_stock: StrictBool = Field(description="true or false; not 1 or \"yes\"")
    restock_eta: JsonDateTime = None


class InventoryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    updates: list[StockUpdateIn] = Field(min_length=1)


class InventoryResult(BaseModel):
    applied: int
    unknown_items: list[str] = Field(description="ids the current model does not know (stored anyway)")


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str | None = Field(None, max_length=4096, description="default: the configured model path")


class ReloadResult(BaseModel):
    model_version: str
    previous_version: str | None


class ErrorOut(BaseModel):
    detail: str
