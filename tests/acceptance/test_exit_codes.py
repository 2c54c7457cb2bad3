"""The commands' exit codes and one-line errors point the right way (issue 14): a backup to a
missing directory names the destination, a busy port is its own documented code, and every
code the commands use is in the operations guide's table."""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import adapter_env, free_port, kkt_adapter_command

from kkt_adapter import cli

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"


def run_command(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kkt_adapter_command(), *args],
        env=adapter_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def documented_exit_codes() -> dict[int, str]:
    """The operations guide's exit code table: code -> its line."""
    text = OPERATIONS.read_text(encoding="utf-8")
    return {int(code): line for line, code in re.findall(r"^(\| `(\d+)` \|.*)$", text, re.M)}


def test_a_backup_into_a_missing_directory_names_the_destination(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "buffer.sqlite") as conn:  # a source that is fine
        conn.execute("CREATE TABLE receipts (id TEXT)")
    dest = tmp_path / "missing" / "dir" / "x.sqlite"

    result = run_command(["backup", str(dest), "--data-dir", str(data)])

    assert result.returncode == cli.EXIT_REFUSED == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert str(dest.parent) in lines[0] and "no such directory" in lines[0]
    assert "buffer.sqlite" not in lines[0]  # the source is not blamed
    assert not (tmp_path / "missing").exists()


def test_serve_on_a_busy_port_exits_3_in_one_line_before_opening_anything(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = run_command(["serve", "--port", str(port), "--data-dir", str(data)])

    assert result.returncode == cli.EXIT_CANNOT_LISTEN == 3
    assert result.stderr.strip().splitlines()[-1] == (
        f"kkt-adapter: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert not (data / "buffer.sqlite").exists()  # nothing opened, nothing reconciled


def test_mock_ofd_on_a_busy_port_exits_3_too(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = run_command(["mock-ofd", "--port", str(port), "--data-dir", str(tmp_path)])
    assert result.returncode == 3
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_every_exit_code_the_commands_use_is_documented() -> None:
    used = {value for name, value in vars(cli).items() if name.startswith("EXIT_") and value != 0}
    source = Path(cli.__file__).read_text(encoding="utf-8")
    assert not re.search(r"typer\.Exit\(\d", source), "exit codes are named constants"
    documented = documented_exit_codes()
    assert used | {0} == set(documented), documented
