"""The one settings model. Precedence: flag > environment (``KKT_*``) > TOML file > default.

Nothing else in the package reads ``os.environ``; besides the model, only the test faults
(``injected_faults``) come from it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kkt_adapter.errors import ConfigError

DEFAULT_EMULATOR_KEY = "kkt-adapter-emulator-key"
TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]{16,}=*")  # RFC 6750 b64token, not short
ORIGIN = re.compile(r"https?://[^/\s]+")
HOST_NAME = re.compile(r"[A-Za-z0-9.\-]+")  # a DNS name or an IPv4 address


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
        default=50_000,
        ge=1,
        le=10_000_000,
        description="Receipts not yet synced the buffer holds (failed prints not counted). "
        "The default holds 30 days offline (the FN's limit) of a busy till, 1,500 receipts a "
        "day; about 4.7 KB of disk each (bench/disk_per_receipt.py), 235 MB when full.",
    )
    buffer_min_free_mb: int = Field(
        default=256,
        ge=0,
        le=10_000_000,
        description="Sales are refused (`503 buffer_full`, reason `disk`) while the buffer's "
        "file system has less free space than this, before the disk fills: the room left "
        "lets delivery, retention and the WAL checkpoint still write. 0: no floor.",
    )
    print_delay_ms: int = Field(
        default=0,
        ge=0,
        le=60_000,
        description=(
            "Emulated KKT print time per receipt. At 0 the emulator fiscalizes the receipts"
            " queued for it in one durable write; above 0, one receipt at a time."
        ),
    )
    auto_open_shift: bool = Field(
        default=True, description="Open a shift automatically on the first receipt."
    )
    device: Literal["emulator", "atol-web", "atol-lib"] = Field(
        default="emulator",
        description=(
            "The cash register: the bundled emulator, or an ATOL register through the ATOL"
            " driver's web server (`atol-web`) or its library (`atol-lib`). With an ATOL"
            " register the register's FN delivers to the OFD itself (delivery mode `device`)."
        ),
    )
    atol_url: str = Field(
        default="http://127.0.0.1:16732",
        description="The ATOL driver's web server (`KKT_DEVICE=atol-web`).",
    )
    atol_user: str | None = Field(default=None, description="Basic-auth user of the web server.")
    atol_password: SecretStr | None = Field(
        default=None, description="Basic-auth password of the web server."
    )
    atol_device_id: str | None = Field(
        default=None, description="The register's id on a web server serving several."
    )
    atol_taxation_type: Literal["osn", "usnIncome", "usnIncomeOutcome", "esn", "patent"] | None = (
        Field(
            default=None,
            description="Taxation system of receipts (tag 1055); unset: the register's default.",
        )
    )
    atol_task_seconds: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="How long a task may take on the register before its outcome is unknown.",
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
    emulator_strict: bool = Field(
        default=False,
        description="The KKT emulator refuses a print request for a receipt it has fiscalized "
        "already (`repeat_print`) instead of answering with the stored document. Either way it "
        "counts and logs such a request: a real register would print a second document.",
    )
    refund_requires_synced: bool = Field(
        default=False,
        description="Hold a refund that names its sale (`refund_of`) until that sale reached "
        "the OFD (`409 refund_held_until_synced`, with `Retry-After`). Off by default: the "
        "adapter is offline-first, and a till must be able to refund while the OFD is out of "
        "reach, as it can sell.",
    )
    device_status_refresh_seconds: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        description="While the KKT is idle, its status (for health and buffer status) is read "
        "again this often; after a print, shift or confirmation it is read at once when idle, "
        "at most once a second while receipts queue. Never on the request's path.",
    )
    device_status_stale_seconds: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="Health calls the KKT's status stale (`status_stale`, degraded) when it was "
        "read longer ago than this (the device busy with one call all that time). Must exceed "
        "the refresh interval.",
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
    insecure: bool = Field(
        default=False,
        description="Allow serving on a non-loopback address without any API token.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed by CORS (comma-separated); empty: no CORS. "
        "A '*' entry is refused.",
    )
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names the API answers to besides localhost, 127.0.0.1 and [::1] "
        "(comma-separated, no port), against DNS rebinding. Checked while no token is set, or "
        "whenever this list is set.",
    )
    rate_limit_per_second: float = Field(
        default=200.0, ge=0, le=1_000_000, description="Requests per second per client; 0: off."
    )
    rate_limit_burst: int = Field(
        default=400, ge=1, le=1_000_000, description="Requests a client may send at once."
    )
    keep_alive_seconds: int = Field(
        default=5, ge=1, le=3600, description="Idle HTTP keep-alive connections close after it."
    )
    max_connections: int = Field(
        default=1000, ge=1, le=100_000, description="Connections at once; beyond it: 503."
    )
    log_format: Literal["json", "text"] = Field(
        default="json", description="Log lines on stderr: json (one object a line) or text."
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
    ofd_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        le=600,
        description="Total time one OFD request may take, answer body included; beyond it the "
        "attempt is a transient failure. Keep it below the claim lease (KKT_DELIVERY_LEASE_MS).",
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
    hlc_max_offset_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86_400 * 365,
        description="An OFD clock stamp further ahead of the local clock than this is not "
        "merged into the HLC (logged as a warning).",
    )
    erp_url: str | None = Field(
        default=None, description="ERP endpoint the status heartbeat is POSTed to. Unset: off."
    )
    erp_heartbeat_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Period of the ERP heartbeat."
    )
    erp_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Timeout of one ERP heartbeat request."
    )
    erp_lost_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="Without a successful heartbeat this long the ERP link is lost (error).",
    )
    retention_days: float = Field(
        default=7.0,
        gt=0,
        le=3650,
        description="Synced receipts the KKT confirmed are pruned this long after their sync.",
    )
    dlq_retention_days: float = Field(
        default=90.0,
        gt=0,
        le=3650,
        description="Receipts that went through the DLQ are kept this long after their sync.",
    )
    print_failed_retention_hours: float = Field(
        default=24.0,
        gt=0,
        le=87_600,
        description="Receipts the KKT refused to print (no fiscal document) are deleted this "
        "long after their last attempt; a POS retry after that is a new sale.",
    )
    print_failed_limit: int = Field(
        default=1000,
        ge=1,
        le=10_000_000,
        description="Most receipts the KKT refused to print kept (the newest); they do not "
        "count against the buffer capacity.",
    )
    retention_sweep_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="Period of pruning and housekeeping."
    )
    retention_batch: int = Field(
        default=500, ge=1, le=10_000, description="Receipts pruned per buffer write."
    )
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _explicit_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or "*" in origin:
                raise ValueError("a wildcard origin is not allowed: list the origins explicitly")
            if not ORIGIN.fullmatch(origin):
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _plain_host_names(cls, value: list[str]) -> list[str]:
        for host in value:
            bare = host.removeprefix("[").removesuffix("]")
            if ":" in bare:  # IPv6, with or without brackets
                try:
                    ipaddress.IPv6Address(bare)
                except ValueError:
                    raise ValueError(f"not an IPv6 address: {host!r}") from None
            elif not HOST_NAME.fullmatch(host):
                raise ValueError(f"not a host name or address without a port: {host!r}")
        return value

    @field_validator("api_token", "admin_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not TOKEN.fullmatch(value.get_secret_value()):
            raise ValueError(
                "a token needs at least 16 characters of A-Z a-z 0-9 - . _ ~ + / (then =)"
            )
        return value

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

    @model_validator(mode="after")
    def _stale_after_refresh(self) -> Settings:
        if self.device_status_stale_seconds <= self.device_status_refresh_seconds:
            raise ValueError(
                "device_status_stale_seconds must exceed device_status_refresh_seconds: an idle"
                " KKT's status would be called stale between two readings"
            )
        return self

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


def default_of(name: str) -> Any:
    """The default of setting ``name``: the one place each default lives (the parts built from
    settings take their own defaults from here)."""
    return Settings.model_fields[name].default


FAULT_CRASH_AFTER_PRINT = "KKT_FAULT_CRASH_AFTER_PRINT"
FAULT_VALUES = {"": False, "0": False, "false": False, "1": True, "true": True}


@dataclass(frozen=True)
class Faults:
    """Faults the crash tests inject into a real ``serve`` process. Not settings: no flag, no
    file, no default in the configuration reference, so an operator never meets them; the
    runtime logs each one set, loudly, at start-up."""

    crash_after_print: bool = False
    """Exit (code 70) right after the KKT printed a receipt, before the buffer recorded it."""


def injected_faults(environ: Mapping[str, str] = os.environ) -> Faults:
    """The faults set in the environment (``KKT_FAULT_CRASH_AFTER_PRINT=true``); the one place
    they are read."""
    value = environ.get(FAULT_CRASH_AFTER_PRINT, "").strip().lower()
    if value not in FAULT_VALUES:
        raise ConfigError(f"invalid {FAULT_CRASH_AFTER_PRINT}: {value!r} (true or false)")
    return Faults(crash_after_print=FAULT_VALUES[value])
