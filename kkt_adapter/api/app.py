"""The FastAPI application: routes, middleware and the lifespan that holds the ``Runtime``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kkt_adapter import __version__
from kkt_adapter.api.answers import ReceiptAnswer
from kkt_adapter.api.docs_pages import add_docs_pages
from kkt_adapter.api.guard import Access, Gate, document_access
from kkt_adapter.api.intake_endpoint import (
    RECEIPT_OPERATION,
    RECEIPT_PATH,
    ReceiptEndpoint,
    is_receipt_post,
)
from kkt_adapter.api.middleware import RequestContext, cors_options, with_cors
from kkt_adapter.api.routes import router
from kkt_adapter.api.routes_cash import cash_router
from kkt_adapter.api.routes_delivery import delivery_router
from kkt_adapter.api.routes_lookup import lookup_router
from kkt_adapter.api.routes_metrics import metrics_router
from kkt_adapter.api.schemas import ReceiptIn
from kkt_adapter.api.ui import ui_router
from kkt_adapter.errors import StartupRefused
from kkt_adapter.hlc import WallClock, system_wall_ms
from kkt_adapter.http_errors import install_error_handlers
from kkt_adapter.metrics import Metrics
from kkt_adapter.mock_ofd import create_mock_ofd_app
from kkt_adapter.runtime import DeviceFactory, build_device, open_runtime, start
from kkt_adapter.settings import Settings

log = logging.getLogger("kkt_adapter")

EMBEDDED_OFD_DIR = "ofd-emulator"
EMBEDDED_OFD_PATH = "/ofd-emulator"

DESCRIPTION = """\
Offline-first fiscal receipt adapter (54-FZ, FFD 1.2). A receipt posted here is committed to
the local buffer, fiscalized on the KKT and answered at once; delivery to the OFD happens in
the background. Money is sent as decimal strings ("7990.00"), JSON integers (whole rubles) or
JSON numbers (read as decimals, never as floats) with at most two fraction digits; answers
write every amount as a decimal string in rubles.
"""


class AdapterApp(FastAPI):
    """The FastAPI app, with the receipt intake route served ahead of its stack."""

    fast_intake: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_intake is not None and is_receipt_post(scope):
            await self.fast_intake(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    device_factory: DeviceFactory = build_device,
    wall_ms: WallClock = system_wall_ms,
) -> FastAPI:
    """The adapter's ASGI app. ``device_factory`` and ``wall_ms`` let tests inject them."""
    ofd_emulator = (
        create_mock_ofd_app(
            settings.data_dir / EMBEDDED_OFD_DIR,
            key=settings.emulator_key.get_secret_value().encode(),
        )
        if settings.ofd_url is None
        else None
    )
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            runtime = await open_runtime(
                settings,
                stack,
                ofd_emulator=ofd_emulator,
                on_ofd_call=metrics.observe_ofd_call,
                device_factory=device_factory,
                wall=wall_ms,
            )
            app.state.runtime = runtime
            try:
                await start(runtime)
            except StartupRefused as refused:
                app.state.refusal = refused.message  # said in one line (kkt_adapter.cli)
                raise
            yield
        log.info("stopped cleanly")

    app = AdapterApp(
        title="kkt-adapter",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by ``add_docs_pages``, without a CDN
        redoc_url=None,
    )
    app.state.metrics = metrics
    gate = Gate.from_settings(settings)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes, gate=gate)
    intake = ReceiptEndpoint(lambda: app.state.runtime, metrics)
    # The route table declares the path (its access class, 405 for other methods); requests
    # to it are served ahead of FastAPI's stack by ``fast_intake``, with the same endpoint.
    app.router.routes.append(Route(RECEIPT_PATH, intake, methods=["POST"], include_in_schema=False))
    app.fast_intake = RequestContext(
        intake,
        max_body_bytes=settings.max_body_bytes,
        gate=gate,
        access=Access.POS,
    )
    if settings.cors_origins:  # explicit origins only; no CORS at all by default
        app.add_middleware(CORSMiddleware, **cors_options(settings.cors_origins))
        app.fast_intake = with_cors(app.fast_intake, settings.cors_origins)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(lookup_router)
    app.include_router(cash_router)
    app.include_router(delivery_router)
    app.include_router(metrics_router)
    app.include_router(ui_router)
    add_docs_pages(app)
    if ofd_emulator is not None:
        app.mount(EMBEDDED_OFD_PATH, ofd_emulator)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, plus the receipt request and answer models of the intake route,
    which reads and writes them by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    receipt_schema = ReceiptIn.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(receipt_schema.pop("$defs", {}))
    components["ReceiptIn"] = receipt_schema
    answer_schema = ReceiptAnswer.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    components.update(answer_schema.pop("$defs", {}))
    components["ReceiptAnswer"] = answer_schema
    schema["paths"] = {RECEIPT_PATH: {"post": RECEIPT_OPERATION}, **schema.get("paths", {})}
    document_access(schema)
    app.openapi_schema = schema
    return schema
