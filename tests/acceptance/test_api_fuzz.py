"""Schemathesis against the running adapter's own ``/openapi.json``: no 5xx, and every
answer matches the schema (each answer's model, ``kkt_adapter.api.answers``), its status, its
content type and its headers. Bounded (a fixed seed and example count) so CI stays fast."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Process, adapter_env

pytestmark = pytest.mark.acceptance

MAX_EXAMPLES = 25
ANSWER_CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
"""Every check schemathesis makes of the answers. ``--checks all`` adds the request-side checks
(auth, required headers, schema-violating or schema-valid requests), which judge the request
schemas and the access table, not the answers: with no token set the documented bearer auth
is not enforced, so they fail on this open adapter by design."""
SEED = 20261125


def test_openapi_fuzzing_finds_no_server_error(
    start_adapter: Callable[..., Process], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = start_adapter()
    schemathesis = Path(sys.executable).parent / "schemathesis"
    run = subprocess.run(
        [
            str(schemathesis), "run", f"{adapter.url}/openapi.json",
            "--checks", ",".join(ANSWER_CHECKS),
            "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
        ],
        capture_output=True, text=True, timeout=300, env=adapter_env(NO_COLOR="1"), cwd=tmp_path,
    )  # fmt: skip
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    with capsys.disabled():  # the example count belongs in the run's output
        found = generated.group(0) if generated else run.stdout[-2000:]
        print(f"\nschemathesis: {found}; server errors: {run.stdout.count('Server error')}")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert generated is not None and generated.group(1) == generated.group(2)
    assert int(generated.group(1)) > 100
    assert "unexpected error" not in adapter.output()  # the 500 handler never ran
