"""The one settings model. Precedence: flag > environment (``KKT_*``) > TOML file > default.

Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kkt_adapter.errors import ConfigError

DEFAULT_EMULATOR_KEY = "kkt-adapter-emulator-key"


class Settings(BaseSettings):
    """Configuration of ``kkt-adapter serve`` (and the client commands)."""

    model_config = SettingsConfigDict(env_prefix="KKT_", extra="forbid", validate_default=True)

    config_file: Path | None = Field(
        default=None, description="Optional TOML file with any of these settings."
    )
    host: str = Field(default="127.0.0.1", description="Address the HTTP API binds to.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    data_dir: Path = Field(
        default=Path("data"), description="Directory of the SQLite buffer and the KKT emulator."
    )
    ofd_url: str | None = Field(
        default=None,
        description="Base URL of the OFD. Unset: an OFD emulator runs inside the adapter.",
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL for the sync leadership lease (several hosts)."
    )
    api_token: SecretStr | None = Field(
        default=None, description="Bearer token of the POS (receipts and reads)."
    )
    admin_token: SecretStr | None = Field(
        default=None, description="Bearer token for sync, DLQ and shift actions."
    )
    buffer_capacity: int = Field(
        default=200, ge=1, le=10_000_000, description="Receipts not yet synced the buffer holds."
    )
    print_delay_ms: int = Field(
        default=0, ge=0, le=60_000, description="Emulated KKT print time per receipt."
    )
    auto_open_shift: bool = Field(
        default=True, description="Open a shift automatically on the first receipt."
    )
    emulator_process: bool = Field(
        default=False,
        description="Run the KKT emulator in a process of its own, as a separate device. Off by "
        "default: on two cores the pipe round trip made intake slower (bench/intake).",
    )
    emulator_key: SecretStr = Field(
        default=SecretStr(DEFAULT_EMULATOR_KEY),
        description="Key of the emulated fiscal sign; the OFD emulator verifies with the same key.",
    )
    node_id: str | None = Field(
        default=None,
        max_length=64,
        description="HLC node id of this adapter. Unset: generated once and kept in the buffer.",
    )
    timezone: str = Field(
        default="Europe/Moscow", description="Time zone of the fiscal documents' date and time."
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="Largest request body."
    )
    delivery_concurrency: int = Field(
        default=16, ge=1, le=256, description="OFD requests in flight at once."
    )
    delivery_batch_size: int = Field(
        default=256, ge=1, le=1000, description="Receipts claimed per delivery pass."
    )
    delivery_lease_ms: int = Field(
        default=30_000, ge=1000, le=3_600_000, description="How long a claim holds a receipt."
    )
    delivery_sweep_seconds: float = Field(
        default=1.0, gt=0, le=300, description="Delivery sweep period (besides wake-ups)."
    )
    leadership_ttl_ms: int = Field(
        default=10_000,
        ge=1000,
        le=600_000,
        description="Sync lease time: a leader that stops renewing is replaced after it.",
    )
    redis_key_prefix: str | None = Field(
        default=None,
        max_length=200,
        description="Prefix of the Redis lease keys. Unset: one per buffer (its node id).",
    )
    backoff_base_seconds: float = Field(
        default=1.0, gt=0, le=3600, description="Retry backoff base (doubles per attempt)."
    )
    backoff_cap_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="Longest wait between two attempts."
    )
    breaker_failures: int = Field(
        default=5, ge=1, le=1000, description="Consecutive transient failures that open it."
    )
    breaker_open_seconds: float = Field(
        default=60.0, gt=0, le=86_400, description="How long the breaker stays open."
    )
    breaker_successes: int = Field(
        default=2, ge=1, le=100, description="Half-open successes that close the breaker."
    )
    test_crash_after_print: bool = Field(
        default=False,
        description="Test-only fault switch: the process exits right after the KKT printed a "
        "receipt and before the adapter recorded it. Never set it in production.",
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value.lower()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        if value != "localhost":
            try:
                ipaddress.ip_address(value)
            except ValueError as exc:
                raise ValueError(f"not an IP address: {value!r}") from exc
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file_from(init_settings, env_settings)
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def _config_file_from(
    init_settings: PydanticBaseSettingsSource, env_settings: PydanticBaseSettingsSource
) -> Path | None:
    """The TOML file named by the flag or ``KKT_CONFIG_FILE``; it must exist."""
    value = init_settings().get("config_file") or env_settings().get("config_file")
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return path


def load_settings(**flags: Any) -> Settings:
    """Build settings from flags (``None`` means "not given"), env, file and defaults.

    Raises ``ConfigError`` with a one-line reason on bad configuration.
    """
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        env_name = "KKT_" + where.upper()
        raise ConfigError(f"invalid {where} ({env_name}): {first['msg']}") from exc
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise ConfigError(f"cannot read configuration: {exc}") from exc


def environment_snapshot() -> dict[str, str]:
    """The ``KKT_*`` variables in force (for diagnostics; secrets masked)."""
    return {
        key: ("***" if "TOKEN" in key or "KEY" in key else value)
        for key, value in os.environ.items()
        if key.startswith("KKT_")
    }
