"""The API's documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, with their scripts,
styles and icon served by the adapter itself under ``/docs/assets/``.

FastAPI's own pages load them from a CDN, so on an offline till they stayed blank. The files
come from the package ``fastapi-offline`` (it tracks Swagger UI 5 and ReDoc 2 releases; 1.7.7
of June 2026). Only its files are used, not its ``FastAPIOffline`` factory: that builds a plain
``FastAPI``, and the adapter's app is its own subclass. ``swagger-ui-bundle`` was rejected: its
last release (1.1.0, 2023) carries Swagger UI 4.15 and no ReDoc.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
REDOC_PATH = "/redoc"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
ASSETS_PATH = "/docs/assets"
OPENAPI_PATH = "/openapi.json"


def add_docs_pages(app: FastAPI) -> None:
    """Serve the two pages and their files (the app is made with ``docs_url=None``,
    ``redoc_url=None``)."""
    assets = StaticFiles(directory=str(files("fastapi_offline").joinpath("static")))
    app.mount(ASSETS_PATH, assets, name="docs-assets")
    favicon = f"{ASSETS_PATH}/favicon.png"
    title = app.title

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=OPENAPI_PATH,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=favicon,
            oauth2_redirect_url=OAUTH2_REDIRECT_PATH,
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=OPENAPI_PATH,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=favicon,
            with_google_fonts=False,  # fonts from Google: the system's serve offline
        )
