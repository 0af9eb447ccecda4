"""The model manifest: the typed contract between the trainer that writes a model and the engine that loads it.

``manifest.json`` holds what a model is (version, format, files and their checksums), what it was trained on
(data span, sources, counts), how (the :class:`recsys.domain.config.TrainConfig`, which owns every training default),
its ranker and its held-out metrics. Keys this build does not know are kept as they are (``extra="allow"``),
so an older reader never drops what a newer writer added; in ``config``, training options this build does not
know are dropped on reading (they cannot change how it reads the model).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from recsys.domain.config import TrainConfig

#: the artifact format this build reads and writes
#: the format this build writes. 2: the pair signals are named after their features (``recsys.model.data.PAIR_SIGNALS``)
FORMAT_VERSION: Final[int] = 2
#: the formats this build reads (a version 1 model loads as it is)
READABLE_FORMATS: Final[tuple[int, ...]] = (1, 2)


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow")


def _known_fields(model: type[BaseModel], value: Any) -> Any:
    """``value`` without the keys ``model`` does not define, recursively into its nested models."""
    if not isinstance(value, dict):
        return value
    known = {}
    for name, field in model.model_fields.items():
        if name in value:
            kind = field.annotation
            nested = isinstance(kind, type) and issubclass(kind, BaseModel)
            known[name] = _known_fields(kind, value[name]) if nested else value[name]  # type: ignore[arg-type]
    return known


def _section_or_none(value: Any) -> Any:
    return value or None  # an empty section means none, as it always has


class DataSpan(_Section):
    start: str  # ISO time of the first event used
    end: str  # ISO time of the last event used


class SourceReport(_Section):
    """One input's rows: read, used, and skipped by reason."""

    source: str
    rows_read: int
    rows_used: int
    skipped: dict[str, int] = Field(default_factory=dict)
    # the values behind a skip reason and their row counts (the event names nobody mapped, by name)
    skipped_values: dict[str, dict[str, int]] = Field(default_factory=dict)


class RerankerSection(_Section):
    """The LightGBM re-ranker over the linear shortlist (its trees are in the model's ``reranker.txt``)."""

    new_item_bias: float = 0.0  # added to the score of candidates the customer never bought
    fixed_weights: dict[str, float] | None = None  # weights of features validation never showed (set, not learned)
    file: str | None = None
    trees: int | None = None
    leaves: int | None = None
    bias_search: dict[str, float] | None = None  # the new-item biases tried: worst HR@3 margin over a baseline


class RankerSection(_Section):
    """How candidates are scored (see :mod:`recsys.query.ranking`). Weights missing here take the defaults."""

    weights: dict[str, float] | None = None
    history_weights: dict[str, float] | None = None  # for candidates the customer bought before
    history_bias: float = 0.0
    min_score: float | None = None  # None: the training config's ``min_score``
    source: str = "default"  # "default" (hand-set weights) or "learned"
    reranker: Annotated[RerankerSection | None, BeforeValidator(_section_or_none)] = None
    validation: dict[str, Any] | None = None  # what the fit saw: period start, queries, lists, loss
    # the familiar intent's shift of never-bought candidates' final scores (None: the build's default) and the
    # shifts tried on validation: all-queries HR@3 margin over history-then-popular
    familiar_shift: float | None = None
    familiar_search: dict[str, float] | None = None
    note: str | None = None  # why the default weights were kept


class Manifest(_Section):
    """A model's ``manifest.json``."""

    model_config = ConfigDict(extra="allow", coerce_numbers_to_str=True)

    version: str = Field(min_length=1, pattern=r"^[^/\\]+$", description="the model directory's name")
    data_span: DataSpan
    format_version: int = FORMAT_VERSION
    files: dict[str, str] = Field(default_factory=dict)  # file name -> sha256, filled in when written
    created_at: str = ""
    train_until: str | None = None
    config: Annotated[TrainConfig, BeforeValidator(lambda value: _known_fields(TrainConfig, value))] = Field(
        default_factory=TrainConfig)
    ranker: RankerSection = Field(default_factory=RankerSection)
    counts: dict[str, Any] = Field(default_factory=dict)
    sources: list[SourceReport] = Field(default_factory=list)
    size_parse_rate: float | None = None  # share of package sizes parsed; None: no sizes in the data
    engine: str = "pandas"  # what computed the data-heavy stages: "pandas" (one machine) or "spark"
    als_loss: list[float] = Field(default_factory=list)
    metrics: dict[str, Any] | None = None  # held-out metrics of the training report
    coverage: dict[str, Any] | None = None  # share of items with at least k substitutes
    # what each store carries: the file's size or the inference's measured coverage per level (training.assortment)
    assortment: dict[str, Any] | None = None
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    stage_peak_rss_mb: dict[str, float] = Field(default_factory=dict)
    catalog_updates: list[dict[str, Any]] = Field(default_factory=list)  # items added since training

