"""``/docs`` and ``/redoc`` on an offline till: every script, style and icon they load comes
from the adapter itself, and is served without a token."""

from __future__ import annotations

import re

import httpx
import pytest

TOKENS = {"api_token": "pos-token-0123456789abcdef", "admin_token": "admin-token-0123456789abcdef"}
REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


def references(html: str) -> list[str]:
    """Every address the page loads: ``src``, ``href``, ReDoc's ``spec-url``, Swagger's ``url``."""
    return [first or second for first, second in REFERENCE.findall(html)]


@pytest.mark.parametrize("settings", [TOKENS], indirect=True)
@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_load_nothing_from_another_host(api: httpx.AsyncClient, page: str) -> None:
    html = await api.get(page)
    assert html.status_code == 200
    loaded = references(html.text)
    assert any(ref.endswith(".js") for ref in loaded), loaded
    assert "/openapi.json" in loaded
    for ref in loaded:
        assert ref.startswith("/") and not ref.startswith("//"), f"{page} loads {ref}"
        assert (await api.get(ref)).status_code == 200, ref  # open, as the page itself
    assert "fonts.googleapis" not in html.text and "cdn." not in html.text


@pytest.mark.parametrize("settings", [TOKENS], indirect=True)
async def test_docs_assets_are_files_only(api: httpx.AsyncClient) -> None:
    assert (await api.get("/docs/assets/nothing.js")).status_code == 404
    escape = await api.get("/docs/assets/..%2F..%2F__init__.py")
    assert escape.status_code == 404
