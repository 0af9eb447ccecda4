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
    state_url: str | None = Field(
        None, description="sqlite:///path or postgresql://user:pass@host:port/db for inventory, feedback and the "
                          "model pointer shared by replicas; when set it replaces state_path"
    )
    state_poll_s: float = Field(1.0, gt=0, le=60, description="catch-up interval when no notification came")
    models_dir: Path | None = Field(
        None, description="the shared models directory the model pointer names versions in (default: the "
                          "model path's parent)"
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    max_batch: int = Field(10_000, ge=1, description="most inventory updates in one request")
    opentelemetry: bool = Field(
        False, description="FastAPI's own OpenTelemetry traces, metrics and logs (checked on every request when on)"
    )
    ui: bool = Field(True, description="serve the review page at /ui (false: /ui is 404)")

    @field_validator("state_path", "state_url", mode="before")
    @classmethod
    def _empty_means_memory(cls, value: object) -> object:
        return None if value == "" else value

    def state_location(self) -> str | None:
        """The state URL in force: ``state_url``, else ``state_path`` as a SQLite URL; None: memory only."""
        if self.state_url is not None:
            return self.state_url
        return f"sqlite:///{self.state_path}" if self.state_path is not None else None

    def models_directory(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.model_path.parent
