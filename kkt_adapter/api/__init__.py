"""The adapter's HTTP API.

``create_app`` is imported on first use, so the answer models (``kkt_adapter.api.answers``)
import with pydantic alone: a client reuses them without FastAPI and the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kkt_adapter.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from kkt_adapter.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
