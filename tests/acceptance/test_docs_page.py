"""``/docs`` in a real headless Chromium that reaches nothing but the adapter: the operations
are listed (with the scripts from a CDN, as before, the page stayed blank)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from browser import dump_dom
from conftest import Process

pytestmark = pytest.mark.acceptance


def test_docs_render_the_operations_offline(
    start_adapter: Callable[..., Process], tmp_path: Path
) -> None:
    adapter = start_adapter(env={"KKT_ADMIN_TOKEN": "admin-token-0123456789abcdef"})
    dom = dump_dom(f"{adapter.url}/docs", tmp_path / "chromium", budget_ms=10000)
    assert 'class="swagger-ui' in dom
    assert "opblock-summary-path" in dom  # one per operation
    for path in ("/v1/kkt/receipt", "/v1/kkt/shift/close", "/v1/health"):
        assert f'data-path="{path}"' in dom, path
