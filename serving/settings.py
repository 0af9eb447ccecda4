"""Service settings, from environment variables prefixed ``RECSYS_`` (or a ``.env`` file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    model_path: Path = Field(Path("models/current"), description="model directory or the `current` symlink")
    admin_token: SecretStr | None = Field(
        None, description="bearer token for inventory writes and reload; unset disables those endpoints"
    )
    state_path: Path | None = Field(
        Path("state/recsys.sqlite3"), description="SQLite file for inventory (WAL); empty: memory only"
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    max_batch: int = Field(10_000, ge=1, description="most inventory updates in one request")
    opentelemetry: bool = Field(
        False, description="FastAPI's own OpenTelemetry traces, metrics and logs (checked on every request when on)"
    )

    @field_validator("state_path", mode="before")
    @classmethod
    def _empty_means_memory(cls, value: object) -> object:
        return None if value == "" else value
