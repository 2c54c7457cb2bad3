"""The status page: one static HTML file whose script reads the API and refreshes itself."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

ui_router = APIRouter()

_PAGE = files("kkt_adapter.api").joinpath("static/status.html").read_text(encoding="utf-8")


@ui_router.get("/ui", response_class=HTMLResponse, tags=["ui"], summary="Status page")
async def status_page() -> HTMLResponse:
    """Buffer fill, breaker, oldest pending, last sync, alerts, DLQ, recent events."""
    return HTMLResponse(_PAGE, headers={"Cache-Control": "no-store"})
