"""The package's layers point down only (docs/architecture.md): checked by import-linter
against the contract in pyproject.toml, on every test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_imports_keep_the_layers_of_docs_architecture() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    run = subprocess.run(
        [str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "Layers point down only KEPT" in run.stdout
    assert "The client takes only the answer models and error codes KEPT" in run.stdout
    assert "Contracts: 2 kept, 0 broken." in run.stdout


def test_the_client_imports_without_the_server() -> None:
    """A POS installs the package for the client: importing it starts no server stack."""
    server = ("fastapi", "starlette", "uvicorn", "kkt_adapter.runtime", "kkt_adapter.buffer")
    code = (
        "import sys; import kkt_adapter.client;"
        f" sys.exit(sorted(m for m in {server!r} if m in sys.modules) or None)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
