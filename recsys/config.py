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
    als: AlsConfig = Field(default_factory=AlsConfig)
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
