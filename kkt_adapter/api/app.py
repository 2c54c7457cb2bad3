"""The FastAPI application: wiring of buffer, device and services, and its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kkt_adapter import __version__
from kkt_adapter.api.guard import Access, Gate, document_access
from kkt_adapter.api.intake_endpoint import (
    RECEIPT_OPERATION,
    RECEIPT_PATH,
    ReceiptEndpoint,
    is_receipt_post,
)
from kkt_adapter.api.middleware import RequestContext, cors_options, with_cors
from kkt_adapter.api.routes import gather_facts, router
from kkt_adapter.api.routes_delivery import delivery_router
from kkt_adapter.api.routes_metrics import metrics_router
from kkt_adapter.api.schemas import ReceiptIn
from kkt_adapter.api.ui import ui_router
from kkt_adapter.buffer import Buffer
from kkt_adapter.buffer.outbox import Outbox
from kkt_adapter.buffer.retention import Retention
from kkt_adapter.delivery import (
    Backoff,
    BreakerConfig,
    CircuitBreaker,
    DeliveryWorker,
    WorkerConfig,
)
from kkt_adapter.delivery.lease import LeaseBackend, RedisLease, SqliteLease, new_holder_id
from kkt_adapter.device import EmulatedKkt
from kkt_adapter.device.base import KktDevice
from kkt_adapter.device.emulator_process import EmulatorProcess
from kkt_adapter.device.gate import DeviceGate
from kkt_adapter.erp import ErpHeartbeat, heartbeat_payload
from kkt_adapter.housekeeping import Housekeeper
from kkt_adapter.http_errors import install_error_handlers
from kkt_adapter.metrics import Metrics
from kkt_adapter.mock_ofd import create_mock_ofd_app
from kkt_adapter.ofd import AsgiOfdClient, HttpOfdClient, OfdClient
from kkt_adapter.service import IntakeService
from kkt_adapter.settings import Settings

log = logging.getLogger("kkt_adapter")

EMBEDDED_OFD_DIR = "ofd-emulator"
EMBEDDED_OFD_PATH = "/ofd-emulator"

DESCRIPTION = """\
Offline-first fiscal receipt adapter (54-FZ, FFD 1.2). A receipt posted here is committed to
the local buffer, fiscalized on the KKT and answered at once; delivery to the OFD happens in
the background. Money is sent as decimal strings with at most two fraction digits.
"""


class AdapterApp(FastAPI):
    """The FastAPI app, with the receipt intake route served ahead of its stack."""

    fast_intake: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_intake is not None and is_receipt_post(scope):
            await self.fast_intake(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


@dataclass
class Runtime:
    """Everything a request handler needs, built once per process in the lifespan."""

    settings: Settings
    buffer: Buffer
    device: KktDevice
    intake: IntakeService
    outbox: Outbox
    worker: DeliveryWorker
    ofd_target: str
    ofd_emulator: bool
    erp: ErpHeartbeat
    housekeeper: Housekeeper
    today: Callable[[], date]


def build_device(settings: Settings) -> KktDevice:
    """The KKT: the bundled emulator (the only driver this version ships), inside this
    process, or in a process of its own behind a pipe (``KKT_EMULATOR_PROCESS``)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = settings.emulator_key.get_secret_value().encode()
    if settings.emulator_process:
        return EmulatorProcess(
            settings.data_dir,
            key=key,
            print_delay_ms=settings.print_delay_ms,
            auto_open_shift=settings.auto_open_shift,
            tz=settings.timezone,
            strict=settings.emulator_strict,
        )
    return EmulatedKkt(
        settings.data_dir,
        key=key,
        print_delay_ms=settings.print_delay_ms,
        auto_open_shift=settings.auto_open_shift,
        tz=ZoneInfo(settings.timezone),
        strict=settings.emulator_strict,
    )


def create_app(
    settings: Settings,
    *,
    device_factory: Callable[[Settings], KktDevice] = build_device,
    wall_ms: Callable[[], int] | None = None,
) -> FastAPI:
    """The adapter's ASGI app. ``device_factory`` and ``wall_ms`` let tests inject them."""
    zone = ZoneInfo(settings.timezone)

    def today() -> date:
        return datetime.now(zone).date()

    ofd_emulator = (
        create_mock_ofd_app(
            settings.data_dir / EMBEDDED_OFD_DIR,
            key=settings.emulator_key.get_secret_value().encode(),
        )
        if settings.ofd_url is None
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            runtime = await _build(settings, device_factory, wall_ms, today, ofd_emulator, stack)
            app.state.runtime = runtime
            runtime.worker.on_call = metrics.observe_ofd_call
            await _start(runtime)
            yield
            await runtime.worker.stop()
        log.info("stopped cleanly")

    app = AdapterApp(
        title="kkt-adapter",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    metrics = Metrics()
    app.state.metrics = metrics
    gate = Gate.from_settings(settings)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes, gate=gate)
    intake = ReceiptEndpoint(app.state, metrics)
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
    app.include_router(delivery_router)
    app.include_router(metrics_router)
    app.include_router(ui_router)
    if ofd_emulator is not None:
        app.mount(EMBEDDED_OFD_PATH, ofd_emulator)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _build(
    settings: Settings,
    device_factory: Callable[[Settings], KktDevice],
    wall_ms: Callable[[], int] | None,
    today: Callable[[], date],
    ofd_emulator: FastAPI | None,
    stack: AsyncExitStack,
) -> Runtime:
    """Open the buffer and the device, and wire intake and delivery; closed by ``stack``."""
    buffer_kwargs: dict[str, Any] = {"wall": wall_ms} if wall_ms else {}
    buffer = Buffer(
        settings.data_dir,
        capacity=settings.buffer_capacity,
        node_id=settings.node_id,
        **buffer_kwargs,
    )
    await asyncio.to_thread(buffer.open)
    stack.callback(buffer.close)
    device = await asyncio.to_thread(device_factory, settings)
    stack.callback(device.close)
    client: OfdClient
    if ofd_emulator is not None:
        await stack.enter_async_context(ofd_emulator.router.lifespan_context(ofd_emulator))
        client = AsgiOfdClient(ofd_emulator)
        target = f"in-process OFD emulator (mounted at {EMBEDDED_OFD_PATH})"
    else:
        assert settings.ofd_url is not None
        client = HttpOfdClient(settings.ofd_url, max_connections=settings.delivery_concurrency)
        target = settings.ofd_url
    stack.push_async_callback(client.close)
    outbox = Outbox(buffer)
    intake = IntakeService(
        buffer,
        device,
        gate=DeviceGate(settings.data_dir),
        crash_after_print=settings.test_crash_after_print,
    )
    stack.callback(intake.close)

    async def confirm(fds: list[int]) -> None:
        await intake.on_device(device.confirm_many, fds)

    lease: LeaseBackend
    if settings.redis_url:
        prefix = settings.redis_key_prefix or f"kkt-adapter:{buffer.node}"
        lease = RedisLease(settings.redis_url, prefix, outbox.fence_high)
    else:
        lease = SqliteLease(buffer.db, buffer.now_ms)
    worker = DeliveryWorker(
        outbox,
        client,
        confirm,
        lease=lease,
        holder=new_holder_id(buffer.node),
        breaker=CircuitBreaker(
            BreakerConfig(
                failure_threshold=settings.breaker_failures,
                open_seconds=settings.breaker_open_seconds,
                success_threshold=settings.breaker_successes,
            ),
            on_change=lambda old, new: log.warning("OFD circuit breaker %s -> %s", old, new),
        ),
        backoff=Backoff(settings.backoff_base_seconds, settings.backoff_cap_seconds),
        config=WorkerConfig(
            batch_size=settings.delivery_batch_size,
            concurrency=settings.delivery_concurrency,
            lease_ms=settings.delivery_lease_ms,
            sweep_seconds=settings.delivery_sweep_seconds,
            leadership_ttl_ms=settings.leadership_ttl_ms,
        ),
    )
    intake.on_pending = worker.wake
    erp = ErpHeartbeat(
        settings.erp_url,
        period=settings.erp_heartbeat_seconds,
        timeout=settings.erp_timeout_seconds,
        lost_after=settings.erp_lost_seconds,
        now_ms=buffer.now_ms,
    )
    retention = Retention.from_days(
        settings.retention_days, settings.dlq_retention_days, settings.retention_batch
    )
    housekeeper = Housekeeper(buffer, intake, retention, period=settings.retention_sweep_seconds)
    stack.push_async_callback(erp.stop)
    stack.push_async_callback(housekeeper.stop)
    return Runtime(
        settings,
        buffer,
        device,
        intake,
        outbox,
        worker,
        target,
        ofd_emulator is not None,
        erp=erp,
        housekeeper=housekeeper,
        today=today,
    )


async def _start(runtime: Runtime) -> None:
    status = await runtime.intake.device_status()
    if status.emulator:
        log.warning(
            "KKT: EMULATOR (%s, FN %s) - not a real cash register; documents are not fiscal",
            status.model,
            status.fn,
        )
    if runtime.ofd_emulator:
        log.warning("OFD: EMULATOR, %s - documents do not reach a real OFD", runtime.ofd_target)
    else:
        log.info("OFD: %s", runtime.ofd_target)
    report = await runtime.intake.reconcile()
    if report.recovered or report.never_printed:
        log.warning(
            "reconciled receipts left unfinished: %d found on the KKT, %d never printed",
            len(report.recovered),
            len(report.never_printed),
        )
    await runtime.buffer.log_event(
        "info", "started", f"kkt-adapter {__version__}; emulator={status.emulator}"
    )
    await runtime.worker.start()

    async def snapshot() -> dict[str, Any]:
        return heartbeat_payload(
            await gather_facts(runtime),
            node_id=runtime.buffer.node,
            breaker=runtime.worker.breaker.state.value,
            ofd_emulator=runtime.ofd_emulator,
        )

    runtime.erp.start(snapshot)
    runtime.housekeeper.start()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema, plus the receipt request model the intake route reads by hand."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    receipt_schema = ReceiptIn.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(receipt_schema.pop("$defs", {}))
    components["ReceiptIn"] = receipt_schema
    schema["paths"] = {RECEIPT_PATH: {"post": RECEIPT_OPERATION}, **schema.get("paths", {})}
    document_access(schema)
    app.openapi_schema = schema
    return schema
