"""Settings of the security block: CORS origins, tokens, limits, log format."""

from __future__ import annotations

import pytest

from kkt_adapter.errors import ConfigError
from kkt_adapter.settings import load_settings


def test_security_defaults() -> None:
    settings = load_settings()
    assert settings.cors_origins == []
    assert settings.insecure is False
    assert settings.rate_limit_per_second == 200 and settings.rate_limit_burst == 400
    assert settings.keep_alive_seconds == 5 and settings.max_connections == 1000
    assert settings.log_format == "json"


def test_cors_origins_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KKT_CORS_ORIGINS", "https://pos.example, http://127.0.0.1:5173")
    assert load_settings().cors_origins == ["https://pos.example", "http://127.0.0.1:5173"]


@pytest.mark.parametrize("origins", ["*", "https://pos.example,*", "https://*.example", "pos"])
def test_cors_wildcards_and_non_origins_are_refused(
    origins: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KKT_CORS_ORIGINS", origins)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "KKT_CORS_ORIGINS" in caught.value.message


def test_short_or_odd_tokens_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(api_token="short")
    assert "KKT_API_TOKEN" in caught.value.message and "short" not in caught.value.message
    with pytest.raises(ConfigError):
        load_settings(admin_token="has spaces in the middle of it")
    assert load_settings(api_token="A" * 16).api_token is not None


def test_log_format_is_json_or_text() -> None:
    assert load_settings(log_format="text").log_format == "text"
    with pytest.raises(ConfigError):
        load_settings(log_format="xml")
