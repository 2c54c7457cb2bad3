"""``kkt-adapter <command> --help`` shows, for every option, its environment variable and its
default (issue 14: the ``[env …; default]`` text was eaten as console markup)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from kkt_adapter.cli import app
from kkt_adapter.settings import default_of

ROOT = Path(__file__).resolve().parents[2]


def setting(name: str) -> tuple[str, str | None]:
    """The environment variable and the shown default of setting ``name``."""
    default = default_of(name)
    shown = (
        None
        if default is None
        else str(default).lower()
        if default in (True, False)
        else str(default)
    )
    return f"KKT_{name.upper()}", shown


# Every option of every command: (environment variable, default), None where it has none.
EXPECTED: dict[str, dict[str, tuple[str | None, str | None]]] = {
    "serve": {
        "--host": setting("host"),
        "--port": setting("port"),
        "--data-dir": setting("data_dir"),
        "--ofd-url": setting("ofd_url"),
        "--redis-url": setting("redis_url"),
        "--config": setting("config_file"),
        "--insecure": setting("insecure"),
    },
    "mock-ofd": {
        "--host": (None, "127.0.0.1"),
        "--port": (None, "8080"),
        "--data-dir": (None, "ofd-data"),
        "--key": ("KKT_EMULATOR_KEY", "(the built-in one)"),
        "--log-level": (None, "info"),
        "--log-format": ("KKT_LOG_FORMAT", "json"),
    },
    "mock-atol": {
        "--host": (None, "127.0.0.1"),
        "--port": (None, "16732"),
        "--data-dir": (None, "atol-data"),
        "--ofd-url": (None, None),
        "--key": ("KKT_EMULATOR_KEY", "(the built-in one)"),
        "--strict": ("KKT_EMULATOR_STRICT", "(false)"),
        "--log-level": (None, "info"),
        "--log-format": ("KKT_LOG_FORMAT", "json"),
    },
    "status": {
        "--url": (None, "(http://KKT_HOST:KKT_PORT)"),
        "--config": setting("config_file"),
    },
    "sync": {
        "--url": (None, "(http://KKT_HOST:KKT_PORT)"),
        "--config": setting("config_file"),
        "--timeout": (None, "600"),
    },
    "backup": {"--data-dir": setting("data_dir"), "--config": setting("config_file")},
    "restore": {"--data-dir": setting("data_dir"), "--config": setting("config_file")},
    "config-reference": {},
}


def help_of(command: str) -> str:
    """The help the installed command prints, in a wide terminal, whitespace collapsed."""
    run = subprocess.run(
        [sys.executable, "-c", "from kkt_adapter.cli import main; main()", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr
    return " ".join(run.stdout.split())


def at(text: str, option: str) -> re.Match[str] | None:
    """Where ``option`` is named in ``text`` (not as part of a longer option)."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text)


def entry_of(text: str, option: str, options: list[str]) -> str:
    """The part of the help from ``option`` to the next option (or the end)."""
    start = at(text, option)
    assert start, f"{option} not in the help"
    rest = text[start.end() :]
    ends = [found.start() for o in [*options, "--help"] if o != option if (found := at(rest, o))]
    return text[start.start() : start.end() + min(ends, default=len(rest))]


def test_every_command_and_option_is_listed_here() -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    found = {
        name: {
            opt
            for param in command.params
            if param.param_type_name == "option" and param.name != "help"
            for opt in param.opts
            if opt.startswith("--")
        }
        for name, command in group.commands.items()
    }
    assert found == {name: set(options) for name, options in EXPECTED.items()}


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_help_shows_each_options_environment_variable_and_default(command: str) -> None:
    text = help_of(command)
    options = list(EXPECTED[command])
    for option, (env, default) in EXPECTED[command].items():
        entry = entry_of(text, option, options)
        if env is not None:
            assert f"env var: {env}" in entry, entry
        else:
            assert "env var" not in entry, entry
        if default is not None:
            assert re.search(
                rf"default: {re.escape(default)}\]|default: {re.escape(default)};", entry
            ), entry
        else:
            assert "default:" not in entry, entry
        assert " ." not in entry, entry  # nothing eaten before a full stop
