"""Service settings, from environment variables prefixed ``RECSYS_`` (or a ``.env`` file)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    model_path: Path = Field(Path("models/current"), description="model directory or the `current` symlink")
    admin_token: SecretStr | None = Field(
        None, description="bearer token for inventory writes and reload; unset disables those endpoints"
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    max_batch: int = Field(10_000, ge=1, description="most inventory updates in one request")
