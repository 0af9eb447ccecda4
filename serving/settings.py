"""Service settings, from environment variables prefixed ``RECSYS_`` (or a ``.env`` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.domain.types import AvailabilityPolicy
from recsys.query.reasons import locales
from recsys.state.answers import DEFAULT_MAX_AGE_S
from serving.cors import parse_origins


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    model_path: Path = Field(Path("models/current"), description="model directory or the `current` symlink")
    admin_token: SecretStr | None = Field(
        None, description="bearer token that holds every scope (the operator's); API keys are made with "
                          "`recsys keys create`"
    )
    auth: Literal["keys", "open"] = Field(
        "keys", description="keys: every /v1 call needs an API key with its scope; open (development): reads, "
                            "profiles and feedback need none, stock and admin calls still do"
    )
    feedback_max_age_s: float = Field(
        DEFAULT_MAX_AGE_S, gt=0, description="feedback is taken for answers at most this old (seconds)"
    )
    state_path: Path | None = Field(
        Path("state/recsys.sqlite3"), description="SQLite file for inventory (WAL); empty: memory only"
    )
    state_url: str | None = Field(
        None, description="sqlite:///path or postgresql://user@host:port/db for inventory, feedback and the "
                          "model pointer shared by replicas; when set it replaces state_path"
    )
    state_password: SecretStr | None = Field(
        None, description="the state database's password when the URL has none (kept out of the process list)"
    )
    state_password_file: Path | None = Field(
        None, description="a file holding the state database's password (stripped), when the URL has none"
    )
    state_poll_s: float = Field(1.0, gt=0, le=60, description="catch-up interval when no notification came")
    models_dir: Path | None = Field(
        None, description="the shared models directory the model pointer names versions in (default: the "
                          "model path's parent)"
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    max_snapshot_bytes: int = Field(
        16_000_000, ge=1024, description="larger bodies of PUT /v1/inventory/snapshot (a store's whole count, "
                                         "read only once its write key is checked) get 413"
    )
    max_batch: int = Field(10_000, ge=1, description="most inventory updates in one request")
    max_batch_cost: int = Field(
        2_000, ge=1, description="most lines x k in one POST /v1/substitutes/batch (more: 413)"
    )
    max_concurrency: int = Field(
        64, ge=0, description="most HTTP requests in flight per process (more: 503 at once); 0: no limit"
    )
    rate_limit_per_s: float = Field(
        200.0, ge=0, description="requests a second per caller and process (more: 429); 0: no limit"
    )
    rate_limit_burst: int = Field(400, ge=1, description="requests a caller may send at once, above the rate")
    opentelemetry: bool = Field(
        False, description="FastAPI's own OpenTelemetry traces, metrics and logs (checked on every request when on)"
    )
    allow_unknown_items: bool = Field(
        False, description="offer items that no stock report, assortment file or sales inference says the store "
                           "has (their availability: unknown)")
    allow_unknown_stores: bool = Field(
        False, description="answer for a store nothing is known of (store_known: false, chain-level rules) "
                           "instead of 404")
    locale: str = Field("en", description="the language of the answers' reason texts (a message file of "
                                          "recsys/query/messages: en, de)")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code of the catalog's prices: how "
                                                                       "reasons write money")
    price_protection: bool = Field(
        False, description="a substitute that costs more than the item ordered is sold at the item's price: the "
                           "answer carries shopper_price and a reason")
    ui: bool = Field(True, description="serve the review page at /ui (false: /ui is 404)")
    docs: bool = Field(True, description="serve /docs, /redoc and /openapi.json (false: they are 404)")
    metrics: bool = Field(True, description="serve Prometheus metrics at /metrics (false: it is 404)")
    # a plain string, not a list: pydantic-settings reads a list from the environment as JSON
    cors_origins: str = Field(
        "", description="browser pages' origins allowed to call the API, comma-separated, e.g. "
                        "https://shop.example.com,http://127.0.0.1:5173; empty: no CORS"
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        return ",".join(parse_origins(value))  # a wrong origin stops the start, not only that page's calls

    @field_validator("state_path", "state_url", "state_password", "state_password_file", mode="before")
    @classmethod
    def _empty_means_memory(cls, value: object) -> object:
        return None if value == "" else value

    def state_location(self) -> str | None:
        """The state URL in force: ``state_url``, else ``state_path`` as a SQLite URL; None: memory only."""
        if self.state_url is not None:
            return self.state_url
        return f"sqlite:///{self.state_path}" if self.state_path is not None else None

    def state_password_value(self) -> str | None:
        """``state_password`` in clear, for :func:`recsys.state.store.open_state` (with ``state_password_file``)."""
        return self.state_password.get_secret_value() if self.state_password is not None else None

    def models_directory(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.model_path.parent

    @field_validator("locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        if value not in locales():
            raise ValueError(f"no message file for locale {value!r}: use one of {', '.join(locales())}")
        return value

    def availability_policy(self) -> AvailabilityPolicy:
        return AvailabilityPolicy(self.allow_unknown_items, self.allow_unknown_stores)

    def cors_origin_list(self) -> tuple[str, ...]:
        """The origins of ``cors_origins``; none: no CORS."""
        return parse_origins(self.cors_origins)
