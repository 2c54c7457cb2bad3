"""The composition root: everything the adapter runs, built once from the settings.

``open_runtime`` opens the buffer, the KKT and the OFD link and wires intake, delivery, shifts,
the ERP heartbeat and housekeeping, each with its hooks as constructor arguments; ``start``
runs what start-up must do (the emulator warnings, reconciliation with the KKT, the delivery
worker and the background loops). An ``AsyncExitStack`` closes everything in reverse order.
The HTTP app (``kkt_adapter.api.app``) holds one ``Runtime``; nothing else builds these parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from starlette.applications import Starlette

from kkt_adapter import __version__
from kkt_adapter.buffer import Buffer
from kkt_adapter.buffer.restore import place, put_back
from kkt_adapter.buffer.retention import Retention
from kkt_adapter.cash_desk import CashDesk
from kkt_adapter.delivery import Backoff, BreakerConfig, CircuitBreaker, DeliveryWorker
from kkt_adapter.delivery.lease import LeaseBackend, RedisLease, SqliteLease
from kkt_adapter.delivery.worker import OnCall, WorkerConfig
from kkt_adapter.device import EmulatedKkt
from kkt_adapter.device.atol.device import AtolDevice
from kkt_adapter.device.atol.expect import Expectations
from kkt_adapter.device.atol.lib import AtolLibTransport
from kkt_adapter.device.atol.web import AtolWebTransport
from kkt_adapter.device.base import KktDevice
from kkt_adapter.device.emulator_process import EmulatorProcess
from kkt_adapter.device.gate import DeviceGate
from kkt_adapter.device.runner import DeviceRunner
from kkt_adapter.device.snapshot import RefreshPolicy
from kkt_adapter.erp import ErpHeartbeat, heartbeat_payload
from kkt_adapter.errors import ConfigError
from kkt_adapter.hlc import WallClock, system_wall_ms
from kkt_adapter.housekeeping import Housekeeper
from kkt_adapter.journal import JournalKeeper
from kkt_adapter.ofd import AsgiOfdClient, HttpOfdClient, OfdClient
from kkt_adapter.service import IntakeService, Shifts
from kkt_adapter.settings import FAULT_CRASH_AFTER_PRINT, Settings, injected_faults
from kkt_adapter.status import Facts, Json, LinkFacts

log = logging.getLogger("kkt_adapter")

DeviceFactory = Callable[[Settings], KktDevice]


def build_device(settings: Settings) -> KktDevice:
    """The KKT: an ATOL register (``KKT_DEVICE``), or the bundled emulator, inside this
    process or in a process of its own behind a pipe (``KKT_EMULATOR_PROCESS``)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.device != "emulator":
        return _atol(settings)
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


def _atol(settings: Settings) -> KktDevice:
    expectations = Expectations(settings.data_dir)
    if settings.device == "atol-lib":
        return AtolDevice(
            _atol_library(),
            taxation_type=settings.atol_taxation_type,
            expectations=expectations,
        )
    password = settings.atol_password.get_secret_value() if settings.atol_password else None
    transport = AtolWebTransport(
        settings.atol_url,
        username=settings.atol_user,
        password=password,
        device_id=settings.atol_device_id,
        deadline_s=settings.atol_task_seconds,
    )
    return AtolDevice(
        transport, taxation_type=settings.atol_taxation_type, expectations=expectations
    )


def _atol_library() -> AtolLibTransport:
    """The driver library's handle, opened with the driver's own saved connection settings."""
    try:
        # The vendor's binding is not on PyPI: it comes with the driver's distribution.
        import libfptr10  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            "KKT_DEVICE=atol-lib needs the ATOL driver v10 and its Python binding (libfptr10.py"
            " from the driver's distribution) importable; use KKT_DEVICE=atol-web with the"
            " driver's web server instead"
        ) from None
    fptr = libfptr10.IFptr("")
    if fptr.open() < 0:
        raise ConfigError(
            f"the ATOL driver cannot open the register: {fptr.errorCode()}"
            f" {fptr.errorDescription()}"
        )
    return AtolLibTransport(fptr, libfptr10.IFptr)


@dataclass
class OfdLink:
    """Where fiscal documents go, and whether that is the emulator inside this process."""

    client: OfdClient
    target: str
    embedded: bool
    """The OFD emulator inside this process."""
    identifying: asyncio.Task[None] | None = None
    """Asking an external OFD whether it is an emulator (at start-up)."""

    @property
    def emulator(self) -> bool:
        """An emulator, embedded or one that said so in an answer (I7)."""
        return self.embedded or self.client.emulator

    async def close(self) -> None:
        if self.identifying is not None:
            self.identifying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.identifying
        await self.client.close()


@dataclass
class Runtime:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    buffer: Buffer
    kkt: DeviceRunner
    """The one way to the KKT (``kkt.driver`` is the driver itself)."""
    intake: IntakeService
    shifts: Shifts
    cash: CashDesk
    worker: DeliveryWorker
    ofd: OfdLink
    erp: ErpHeartbeat
    housekeeper: Housekeeper
    journal: JournalKeeper
    """Holds the buffer to the KKT's journal (I8)."""
    today: Callable[[], date]
    """The calendar day in the shop's time zone (the VAT rule depends on it)."""

    async def facts(self) -> Facts:
        """Measure the buffer, and take the device's status as the device runner last read
        it: status, health and the ERP heartbeat never wait behind a print."""
        counts, oldest, storage = await asyncio.gather(
            self.buffer.counts(), self.buffer.oldest_unsent(), self.buffer.storage()
        )
        kkt = self.kkt.snapshot()
        error = kkt.error
        if kkt.status is None and error is None:
            error = "the KKT's status has not been read yet"
        return Facts(
            counts=counts,
            capacity=self.buffer.capacity,
            oldest=oldest,
            device=kkt.current,
            device_error=error,
            now_ms=self.buffer.now_ms(),
            erp=self.erp.facts(),
            storage=storage,
            disk=self.buffer.disk(),
            journal=self.journal.state,
            kkt=kkt,
        )

    async def link_facts(self) -> LinkFacts:
        """Measure the OFD link: the breaker, the last contact, the last sync, the lease."""
        worker = self.worker
        return LinkFacts(
            breaker=worker.breaker.state,
            consecutive_failures=worker.breaker.consecutive_failures,
            last_success_ms=worker.contact.last_success_ms,
            last_failure_ms=worker.contact.last_failure_ms,
            last_error=worker.contact.last_error,
            last_sync=await self.buffer.outbox.last_sync(),
            target=self.ofd.target,
            emulator=self.ofd.emulator,
            leadership=worker.leadership,
            delivery=worker.delivery,
        )


async def open_runtime(
    settings: Settings,
    stack: AsyncExitStack,
    *,
    ofd_emulator: Starlette | None,
    on_ofd_call: OnCall,
    device_factory: DeviceFactory = build_device,
    wall: WallClock = system_wall_ms,
) -> Runtime:
    """Open the buffer, the KKT and the OFD link and wire the rest; ``stack`` closes them.

    ``ofd_emulator``: the embedded OFD emulator's app when no ``ofd_url`` is set;
    ``on_ofd_call``: told each OFD call's outcome and time (the metrics).
    """
    zone = ZoneInfo(settings.timezone)
    buffer = Buffer(
        settings.data_dir,
        capacity=settings.buffer_capacity,
        min_free_bytes=settings.buffer_min_free_mb * 2**20,
        node_id=settings.node_id,
        wall=wall,
        hlc_max_offset_ms=int(settings.hlc_max_offset_seconds * 1000),
    )
    await asyncio.to_thread(buffer.open)
    stack.callback(buffer.close)
    driver = await asyncio.to_thread(device_factory, settings)
    faults = injected_faults()
    if faults.crash_after_print:
        log.critical(
            "TEST FAULT %s is set: this process exits right after each print, before recording"
            " it. For the crash tests only; never on a till.",
            FAULT_CRASH_AFTER_PRINT,
        )
    kkt = DeviceRunner(
        driver,
        DeviceGate(settings.data_dir),
        buffer.clock,
        crash_after_print=faults.crash_after_print,
        refresh=RefreshPolicy(idle_seconds=settings.device_status_refresh_seconds),
        wall=wall,
    )
    stack.callback(kkt.close)
    ofd = await _open_ofd(settings, ofd_emulator, stack)
    worker = DeliveryWorker(
        buffer.outbox,
        ofd.client,
        kkt.confirm_many,
        lease=_lease(settings, buffer),
        holder=buffer.owner,
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
        on_call=on_ofd_call,
        exchange=kkt.exchange if kkt.delivery == "device" else None,
    )
    stack.push_async_callback(worker.stop)
    intake = IntakeService(
        buffer,
        kkt,
        on_pending=worker.wake,
        refund_requires_synced=settings.refund_requires_synced,
    )
    journal = JournalKeeper(buffer, kkt, on_pending=worker.wake)
    erp = ErpHeartbeat(
        settings.erp_url,
        period=settings.erp_heartbeat_seconds,
        timeout=settings.erp_timeout_seconds,
        lost_after=settings.erp_lost_seconds,
        now_ms=buffer.now_ms,
    )
    stack.push_async_callback(erp.stop)
    retention = Retention.from_days(
        settings.retention_days,
        settings.dlq_retention_days,
        settings.retention_batch,
        print_failed_hours=settings.print_failed_retention_hours,
        print_failed_limit=settings.print_failed_limit,
    )
    cash = CashDesk(buffer, kkt)
    housekeeper = Housekeeper(
        buffer, intake, journal, retention, cash=cash, period=settings.retention_sweep_seconds
    )
    stack.push_async_callback(housekeeper.stop)
    return Runtime(
        settings=settings,
        buffer=buffer,
        kkt=kkt,
        intake=intake,
        shifts=Shifts(buffer, kkt),
        cash=cash,
        worker=worker,
        ofd=ofd,
        erp=erp,
        housekeeper=housekeeper,
        journal=journal,
        today=lambda: datetime.now(zone).date(),
    )


async def _open_ofd(
    settings: Settings, emulator: Starlette | None, stack: AsyncExitStack
) -> OfdLink:
    client: OfdClient
    if settings.ofd_url is None:
        assert emulator is not None, "no OFD URL: the embedded emulator is needed"
        await stack.enter_async_context(emulator.router.lifespan_context(emulator))
        client = AsgiOfdClient(emulator, timeout_seconds=settings.ofd_timeout_seconds)
        link = OfdLink(client, "in-process OFD emulator (mounted at /ofd-emulator)", True)
    else:
        http = HttpOfdClient(
            settings.ofd_url,
            max_connections=settings.delivery_concurrency,
            timeout_seconds=settings.ofd_timeout_seconds,
        )
        link = OfdLink(http, settings.ofd_url, False)
        # In the background: start-up must not wait for an OFD that does not answer.
        link.identifying = asyncio.create_task(http.identify(), name="ofd-identify")
    stack.push_async_callback(link.close)
    return link


def _lease(settings: Settings, buffer: Buffer) -> LeaseBackend:
    if settings.redis_url:
        prefix = settings.redis_key_prefix or f"kkt-adapter:{buffer.node}"
        return RedisLease(settings.redis_url, prefix, buffer.outbox.fence_high, buffer.owner_alive)
    return SqliteLease(buffer.outbox)


async def start(runtime: Runtime) -> None:
    """Say what is emulated, refuse a KKT that contradicts the buffer, settle what a crash
    left unfinished and recover what the buffer lacks from the KKT's journal, then start the
    background work: delivery, the ERP heartbeat, housekeeping."""
    status = await runtime.journal.verify()  # StartupRefused: another FN, FDs gone back
    if status.emulator:
        log.warning(
            "KKT: EMULATOR (%s, FN %s) - not a real cash register; documents are not fiscal",
            status.model,
            status.fn,
        )
    if runtime.kkt.delivery == "device":
        log.info("OFD: the register's FN sends its documents itself (delivery device)")
    elif runtime.ofd.embedded:
        log.warning("OFD: EMULATOR, %s - documents do not reach a real OFD", runtime.ofd.target)
    else:  # an external emulator says so as soon as it answers (HttpOfdClient)
        log.info("OFD: %s", runtime.ofd.target)
    report = await runtime.intake.reconcile()
    if report.recovered or report.never_printed:
        log.warning(
            "reconciled receipts left unfinished: %d found on the KKT, %d never printed",
            len(report.recovered),
            len(report.never_printed),
        )
    await runtime.journal.check()
    await runtime.buffer.log_event(
        "info", "started", f"kkt-adapter {__version__}; emulator={status.emulator}"
    )
    await runtime.worker.start()

    async def payload() -> Json:
        return heartbeat_payload(
            await runtime.facts(),
            node_id=runtime.buffer.node,
            breaker=runtime.worker.breaker.state,
            ofd_emulator=runtime.ofd.emulator,
        )

    runtime.erp.start(payload)
    runtime.housekeeper.start()


@dataclass(frozen=True)
class RestoreReport:
    """What ``kkt-adapter restore`` did."""

    receipts: int
    """Receipts in the backup."""
    recovered: int
    """Receipts the KKT printed that the backup lacked, recovered from its journal."""
    kept: Path | None
    """Where the buffer that was replaced is kept."""


async def restore_buffer(
    settings: Settings, backup: Path, *, device_factory: DeviceFactory = build_device
) -> RestoreReport:
    """Put a backup in place of the buffer and reconcile it with the KKT's journal (I8).

    Refused (``RuntimeError``, ``StartupRefused``) while an adapter runs on the data dir, for
    a backup that does not check out, or one the KKT contradicts (another till's, another
    FN's): then the replaced buffer is put back. Delivery of what was recovered starts with
    the next ``serve``.
    """
    placed = await asyncio.to_thread(place, backup, settings.data_dir)
    try:
        async with AsyncExitStack() as stack:
            buffer = Buffer(settings.data_dir, capacity=settings.buffer_capacity)
            await asyncio.to_thread(buffer.open)
            stack.callback(buffer.close)
            driver = await asyncio.to_thread(device_factory, settings)
            kkt = DeviceRunner(driver, DeviceGate(settings.data_dir), buffer.clock)
            stack.callback(kkt.close)
            journal = JournalKeeper(buffer, kkt, on_pending=lambda: None)
            await journal.verify()
            report = await journal.check()
            if report is None:
                raise RuntimeError(f"the KKT's journal could not be read: {journal.state.error}")
            await IntakeService(buffer, kkt, on_pending=lambda: None).reconcile()
            await buffer.log_event(
                "warning",
                "restored",
                f"buffer restored from {backup}; {len(report.recovered)} receipts recovered"
                " from the KKT's journal",
            )
    except BaseException:
        await asyncio.to_thread(put_back, placed, settings.data_dir)
        raise
    return RestoreReport(placed.receipts, len(report.recovered), placed.kept)
