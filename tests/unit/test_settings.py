from pathlib import Path

import pytest

from kkt_adapter.errors import ConfigError
from kkt_adapter.settings import Faults, Settings, injected_faults, load_settings


def test_defaults() -> None:
    settings = load_settings()
    assert settings.port == 8000
    assert settings.buffer_capacity == 50_000  # 30 days of a busy till: docs/decisions.md
    assert settings.buffer_min_free_mb == 256
    assert settings.print_delay_ms == 0
    assert settings.auto_open_shift is True


def test_precedence_flag_over_env_over_file_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "kkt.toml"
    toml.write_text("port = 9001\nbuffer_capacity = 50\nprint_delay_ms = 7\n")
    monkeypatch.setenv("KKT_BUFFER_CAPACITY", "60")
    monkeypatch.setenv("KKT_PORT", "9002")
    settings = load_settings(config_file=toml, port=9003)
    assert settings.port == 9003  # flag
    assert settings.buffer_capacity == 60  # env beats file
    assert settings.print_delay_ms == 7  # file beats default
    assert settings.log_level == "info"  # default


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "kkt.toml"
    toml.write_text("buffer_capacity = 42\n")
    monkeypatch.setenv("KKT_CONFIG_FILE", str(toml))
    assert load_settings().buffer_capacity == 42


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        ({"port": 70000}, "port"),
        ({"buffer_capacity": 0}, "buffer_capacity"),
        ({"host": "not a host"}, "host"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"config_file": Path("/nonexistent/kkt.toml")}, "config file not found"),
    ],
)
def test_bad_configuration_is_one_clear_line(flags: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(**flags)
    assert fragment in caught.value.message
    assert "\n" not in caught.value.message


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KKT_BUFFER_CAPACITY", "lots")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "KKT_BUFFER_CAPACITY" in caught.value.message


def test_malformed_toml_is_a_config_error(tmp_path: Path) -> None:
    toml = tmp_path / "kkt.toml"
    toml.write_text("port = = 1\n")
    with pytest.raises(ConfigError):
        load_settings(config_file=toml)


def test_no_test_switch_among_the_production_settings() -> None:
    assert not [name for name in Settings.model_fields if "test" in name or "fault" in name]
    reference = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for hidden in ("CRASH_AFTER_PRINT", "KKT_FAULT", "KKT_TEST"):
        assert hidden not in reference.upper()


def test_the_crash_fault_is_read_from_its_own_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert injected_faults() == Faults(crash_after_print=False)
    monkeypatch.setenv("KKT_FAULT_CRASH_AFTER_PRINT", "true")
    assert injected_faults() == Faults(crash_after_print=True)
    assert load_settings() == load_settings()  # and no setting takes it
    monkeypatch.setenv("KKT_FAULT_CRASH_AFTER_PRINT", "maybe")
    with pytest.raises(ConfigError, match="KKT_FAULT_CRASH_AFTER_PRINT"):
        injected_faults()
