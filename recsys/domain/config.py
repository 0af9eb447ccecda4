"""Training configuration: one documented pydantic model, stored verbatim in every model's manifest."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


def default_event_weights() -> dict[str, float]:
    return {
        "purchase": 1.0,
        "substitution_accepted": 1.0,
        "cart": 0.5,
        "favourite": 0.4,
        "wishlist": 0.4,
        "view": 0.1,
    }


class AlsConfig(BaseModel):
    """Parameters of ``implicit.cpu.als.AlternatingLeastSquares``."""

    model_config = ConfigDict(extra="forbid")

    factors: int = Field(64, ge=2, le=1024, description="embedding dimension")
    iterations: int = Field(15, ge=1, le=200)
    regularization: float = Field(0.05, ge=0.0)
    alpha: float = Field(5.0, gt=0.0, description="confidence = 1 + alpha * log1p(weight)")
    random_state: int = 0


class RankerConfig(BaseModel):
    """The learned ranker: weights fitted on the last weeks of the training data (see training.ranker_fit)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: use the hand-set default weights")
    validation_weeks: float = Field(6.0, gt=0.0, description="held-out weeks at the end of the training data")
    max_queries: int = Field(15_000, ge=100, description="validation queries sampled for the fit")
    max_customers: int = Field(
        10_000, ge=100, description="customers whose validation-period switches become queries (a seeded sample, "
        "all when fewer): bounds the stage's time and memory as the data grows",
    )
    min_queries: int = Field(200, ge=1, description="fewer validation queries than this keeps the defaults")
    holdout_share: float = Field(
        0.2, ge=0.0, lt=1.0, description="share of the sampled validation queries kept out of the fit"
    )
    selection_queries: int = Field(
        10_000, ge=0, description="held-out queries for choosing the new-item bias and for the report's held-out "
        "metrics: the held-out share, topped up with validation queries the fit did not sample",
    )
    l2: float = Field(1e-3, ge=0.0)
    new_item_emphasis: bool = Field(
        True, description="also fit each query on only its new-to-customer items, so the ranker learns both"
    )
    gbdt_trees: int = Field(
        50, ge=0, description="boosting rounds of the LightGBM lambdarank re-ranker; 0: the linear ranker only"
    )
    gbdt_leaves: int = Field(15, ge=2, description="leaves per tree of the re-ranker")
    gbdt_learning_rate: float = Field(0.2, gt=0.0, le=1.0)
    new_item_bias: float | None = Field(
        None, description="added to the re-ranker's score of items the customer never bought; None: the value of "
        "training.ranker_fit.NEW_ITEM_BIASES whose smaller HR@3 margin over the best baseline (all queries, "
        "new-to-customer queries) on the held-out validation queries is largest",
    )
    seed: int = 0


class AssortmentConfig(BaseModel):
    """How the trainer infers what each store carries when no assortment file says so (``training.assortment``)."""

    model_config = ConfigDict(extra="forbid")

    window_days: float = Field(91.0, gt=0.0, description="an item sold within this many days is likely carried")
    holdout_days: float = Field(
        28.0, gt=0.0, description="the data's last days, on which the inference from the days before is measured")
    store_level_coverage: float = Field(
        0.95, gt=0.0, le=1.0, description="store-level inference is used at a store only where it covered at least "
        "this share of the store's purchase lines in the holdout; the chain-level inference elsewhere")
    min_holdout_lines: int = Field(
        100, ge=1, description="a store with fewer purchase lines in the holdout is not measured: chain level")


class TrainConfig(BaseModel):
    """Everything ``recsys train`` needs besides the data. Defaults are tuned for The Complete Journey."""

    model_config = ConfigDict(extra="forbid")

    event_weights: dict[str, float] = Field(
        default_factory=default_event_weights,
        description="weight of one event by type (purchase > cart > view); unknown types are skipped and counted",
    )
    recency_half_life_days: float = Field(
        120.0, gt=0.0, description="an event this many days before the data's end counts half"
    )
    trend_half_life_days: float = Field(
        21.0, gt=0.0, description="half-life of the short-term popularity (trend) feature"
    )
    als: AlsConfig = Field(default_factory=AlsConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    max_candidates: int = Field(
        2000, ge=10, description="most group members scored per query (FAISS top-N within the group beyond this)"
    )
    max_neighbours: int = Field(100, ge=1, description="co-occurrence neighbours kept per item")
    min_score: float = Field(
        0.25, ge=0.0, description="candidates scoring below this are never returned: fewer results, no padding"
    )
    min_group_size: int = Field(
        4, ge=1, description="fewer substitutable candidates than this widens the search to the parent category"
    )
    assortment: AssortmentConfig = Field(default_factory=AssortmentConfig)
