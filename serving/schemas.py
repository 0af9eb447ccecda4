"""HTTP request bodies and the responses that are the HTTP layer's own (the OpenAPI schema at /docs comes from
these). Answers and profiles are the engine's types (``recsys.domain.types``), serialised as they are."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

from recsys.domain.types import MAX_K, Intent, SubstituteFilters
from recsys.state.answers import MAX_ANSWER_ID_LENGTH
from recsys.state.inventory import ONLINE

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
    session_id: Id | None = Field(None, description=(
        "the shopping session, for online experiments: it decides the arm when there is no customer_id"))
    store_id: Id | None = Field(None, description=f"default: {ONLINE!r}")
    filters: SubstituteFilters | None = None
    intent: Intent = Field(Intent.balanced, description=(
        "balanced: one list for both purposes; familiar: what this customer will most likely accept (their own "
        "items first where they fit); discover: only items the customer never bought"))


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


class FeedbackIn(BaseModel):
    """At least one of ``accepted``, ``chosen`` or a non-empty ``rejected``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"required": ["accepted"], "properties": {"accepted": {"type": "string"}}},
        {"required": ["chosen"], "properties": {"chosen": {"type": "string"}}},
        {"required": ["rejected"], "properties": {"rejected": {"minItems": 1}}},
    ]})

    answer_id: str = Field(min_length=1, max_length=MAX_ANSWER_ID_LENGTH, description=(
        "the answer_id of the answer that was shown, unchanged: it says which item, customer, store and "
        "substitutes the decision is about"))
    accepted: Id | None = Field(None, description="the shown substitute the shopper accepted")
    rejected: list[Id] = Field(default_factory=list, max_length=MAX_K, description="shown substitutes rejected")
    chosen: Id | None = Field(None, description="a manual choice (picker or shopper), shown or not")
    source: Literal["shopper", "picker"] = "shopper"

    @model_validator(mode="after")
    def _decides_something(self) -> FeedbackIn:
        if self.accepted is None and self.chosen is None and not self.rejected:
            raise ValueError("feedback needs accepted, chosen or at least one rejected item")
        return self


class FeedbackRecorded(BaseModel):
    id: int = Field(description="the stored feedback's id")
    duplicate: bool = Field(False, description="true: this answer's decision was recorded before (a retry)")


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


#: what a snapshot says of the store's items it does not list
Unlisted = Literal["out_of_stock", "unchanged"]


class SnapshotItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    item_id: Id
    in_stock: StrictBool = Field(description="true or false; not 1 or \"yes\"")
    restock_eta: JsonDateTime = None


class StockSnapshotIn(BaseModel):
    """A store's whole count (a store system's nightly stock count), applied in one step."""

    model_config = ConfigDict(extra="forbid")

    store_id: Id
    items: list[SnapshotItemIn] = Field(description="each item once; may be empty")
    unlisted: Unlisted = Field(description=(
        "out_of_stock: every item of the store not listed is out of stock from now on, items never reported "
        "included (only items reported in stock are offered there); unchanged: the items not listed keep their "
        "state"))

    @model_validator(mode="after")
    def _each_item_once(self) -> StockSnapshotIn:
        seen: set[str] = set()
        for item in self.items:
            if item.item_id in seen:
                raise ValueError(f"item_id {item.item_id!r} is listed twice; list each item once")
            seen.add(item.item_id)
        return self


class SnapshotResult(BaseModel):
    store_id: str
    applied: int = Field(description="items listed, all applied")
    unknown_items: int = Field(description=(
        "how many listed ids the current model does not know: stored anyway, as a later model may know them"))
    unlisted: Unlisted


class ReloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str | None = Field(None, max_length=4096, pattern=r"^[^\x00]*$",
                                   description="default: the configured model path (no NUL characters)")


class ReloadResult(BaseModel):
    model_version: str
    previous_version: str | None


class ErrorOut(BaseModel):
    detail: str


class ValidationErrorOut(BaseModel):
    """FastAPI's answer to a body that does not validate: one entry per problem."""

    detail: list[dict[str, Any]]


class ModelSummary(BaseModel):
    """The serving model at a glance (``GET /v1/model``), from its manifest: what the review page's model view
    shows beside the report."""

    model_version: str
    created_at: str
    data_span: dict[str, Any] = Field(description="first and last event time of the training data")
    train_until: str | None
    counts: dict[str, Any] = Field(description="items, customers, stores, events ...")
    ranker: str = Field(description="\"learned\" or \"default\" (hand-set) weights")
    reranker_trees: int | None = Field(description="LightGBM re-ranker trees; null: linear score only")
    headline_metrics: dict[str, float] = Field(
        description="held-out headline metrics of every intent (HR@1, HR@3, NDCG@10 ...); empty if none")
    heldout: dict[str, Any] | None = Field(
        description="the held-out evaluation: split, queries and each method's metrics per query subset")
    coverage: dict[str, Any] | None = Field(description="share of sampled items with at least k substitutes")
    report_files: list[str] = Field(description="served under /v1/model/report/{name}")
    currency: str = Field(description="ISO 4217 code of the catalog's prices (RECSYS_CURRENCY)")
    locale: str = Field(description="the language of the answers' reason texts (RECSYS_LOCALE)")


#: an experiment's arm: the current model, a model version (a plain name), or an intent
_ARM = r"^(current|intent=[a-z]{1,32}|[A-Za-z0-9_-][A-Za-z0-9._-]{0,127})$"


class ExperimentIn(BaseModel):
    """An online experiment to start (``POST /v1/admin/experiments``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                      description="1 to 64 letters, digits, '.', '_' or '-'; never reused")
    treatment: str = Field(pattern=_ARM, description="a model version of the models directory, or intent=NAME")
    control: str = Field("current", pattern=_ARM,
                         description="current (the model every replica serves), a model version, or intent=NAME")
    share: float = Field(gt=0, lt=1, description="the share of shoppers in treatment, strictly between 0 and 1")
    stores: list[Id] = Field(default_factory=list, max_length=1000, description="where it runs; empty: everywhere")
    starts_at: JsonDateTime = Field(None, description="RFC 3339; default: now")
    stops_at: JsonDateTime = Field(None, description="RFC 3339; default: until stopped")


class ExperimentOut(BaseModel):
    name: str
    status: Literal["scheduled", "running", "ended"]
    control: str
    treatment: str
    share: float
    stores: list[str] = Field(description="where it runs; empty: everywhere")
    starts_at: str
    stops_at: str | None
    stopped_at: str | None
    created_at: str


class ArmOut(BaseModel):
    answers: int = Field(description="answers served in this arm (counted by every replica)")
    decided: int = Field(description="answers with feedback (one decision each)")
    accepted: int = Field(description="decisions that took a shown substitute")
    acceptance: float | None = Field(description="accepted / decided")
    ci95: list[float] | None = Field(description="95% Wilson interval of the acceptance (this arm alone)")
    first_accepted: int = Field(description="decisions that took the first substitute shown")
    first_acceptance: float | None = Field(description="first_accepted / decided")
    accepted_price_difference: float | None = Field(
        description="mean price of the accepted substitutes minus the unavailable item's")
    orders: int = Field(description="whole orders served in this arm: batch answers (counted by every replica)")
    orders_decided: int = Field(description="orders with at least one decided line")
    orders_substituted: int = Field(
        description="decided orders in which every decided line took a shown substitute")
    order_substitution_rate: float | None = Field(description="orders_substituted / orders_decided")
    order_substitution_ci95: list[float] | None = Field(
        description="95% Wilson interval of the order substitution rate (this arm alone)")


class ExperimentReportOut(ExperimentOut):
    arms: dict[Literal["control", "treatment"], ArmOut]
    decision: Literal["no decision yet", "treatment better", "treatment worse"] = Field(
        description="the sequential test's decision on the acceptance rates, valid however often it is read")
    p_value: float = Field(description="always-valid p-value (mSPRT); decided at or below alpha")
    difference: float | None = Field(description="treatment's acceptance minus control's")
    difference_ci95: list[float] | None = Field(
        description="always-valid 95% confidence sequence of the difference (null before both arms have enough)")
    decided_after: int | None = Field(description="decisions (both arms) after which the test decided")
    alpha: float
    mixing_sd: float = Field(description="the test's mixing standard deviation (tau)")
