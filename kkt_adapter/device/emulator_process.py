"""The KKT emulator as a separate device: a child process the adapter talks to over a pipe.

A real KKT is a device on a serial/USB/TCP link with its own processor; the emulator's work
(building and signing the fiscal document, its SQLite log) would otherwise compete with the
HTTP loop and the buffer for this process's GIL. Run as a child process it uses another core,
and the adapter's side of a call is an encode, a pipe write and a blocking read that releases
the GIL.

No automatic restart: once the child has exited, every call raises
``DeviceError(reason="offline")`` until the adapter is restarted, as with an unplugged KKT.
If the child exits in the middle of a print the outcome is unknown to the adapter, which asks
the device's log (``find_document``) before it decides, as with any device failure.
"""

from __future__ import annotations

import contextlib
import selectors
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kkt_adapter.device import wire
from kkt_adapter.device.base import CashResult, DeviceStatus, JournalEntry, ShiftReport
from kkt_adapter.domain.fiscal import FfdDocument, FiscalResult
from kkt_adapter.domain.money import Kopecks
from kkt_adapter.domain.shift_totals import CashKind
from kkt_adapter.errors import ConfigError, DeviceError, KktAdapterError

CHILD_MODULE = "kkt_adapter.device.serve_emulator"
STARTUP_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
OFFLINE_MESSAGE = "the KKT emulator process exited"


class EmulatorProcess:
    """``EmulatedKkt`` in a child process (``KktDevice``); same arguments and results.

    Differences from ``EmulatedKkt``: the child reads the real clock, ``tz`` is a zone name,
    and ``python`` is the interpreter that runs the child. Start-up waits for the child to
    report its FN, so configuration errors (an FN mismatch, an empty key) raise
    ``ConfigError`` here with the child's message.
    """

    max_group = 1  # each receipt is its own request over the pipe

    def __init__(
        self,
        data_dir: Path,
        *,
        key: bytes,
        fn: str | None = None,
        registration_number: str | None = None,
        print_delay_ms: int = 0,
        auto_open_shift: bool = True,
        shift_max_hours: int = 24,
        offline_limit_days: int = 30,
        tz: str = "Europe/Moscow",
        strict: bool = False,
        python: str = sys.executable,
        startup_timeout: float = STARTUP_TIMEOUT_S,
    ) -> None:
        config = {
            "data_dir": str(Path(data_dir).resolve()),
            "key": key.hex(),
            "fn": fn,
            "registration_number": registration_number,
            "print_delay_ms": print_delay_ms,
            "auto_open_shift": auto_open_shift,
            "shift_max_hours": shift_max_hours,
            "offline_limit_days": offline_limit_days,
            "tz": tz,
            "strict": strict,
        }
        # One request in flight: a frame written and its answer read as one step.
        self._lock = threading.Lock()
        self._next_id = 0
        self._exited = False
        try:
            self._proc = subprocess.Popen(
                [python, "-m", CHILD_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        except OSError as exc:
            raise ConfigError(f"cannot start the KKT emulator process: {exc}") from exc
        try:
            self.fn: str = self._handshake(config, startup_timeout)
        except BaseException:
            self._stop(timeout=0)
            raise

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    def print_receipt(self, receipt_id: str, document: FfdDocument) -> FiscalResult:
        """Fiscalize ``document`` (see ``EmulatedKkt.print_receipt``)."""
        result = wire.fiscal_result(self._call("print_receipt", receipt_id, document))
        assert result is not None  # a print answers with its result or an error
        return result

    def print_receipts(
        self, items: Sequence[tuple[str, FfdDocument]]
    ) -> list[FiscalResult | Exception]:
        """One request per receipt (``max_group`` is 1): refusals are outcomes."""
        outcomes: list[FiscalResult | Exception] = []
        for receipt_id, document in items:
            try:
                outcomes.append(self.print_receipt(receipt_id, document))
            except DeviceError as refused:
                outcomes.append(refused)
        return outcomes

    def find_document(self, receipt_id: str) -> FiscalResult | None:
        """The fiscalized receipt whose tag 1192 is ``receipt_id``, if any."""
        return wire.fiscal_result(self._call("find_document", receipt_id))

    def journal(self, after_fd: int, limit: int) -> list[JournalEntry]:
        """Fiscalized receipts above ``after_fd`` in FD order, at most ``limit``."""
        return wire.journal(self._call("journal", after_fd, limit))

    def last_document(self) -> FiscalResult | None:
        """The most recent fiscalized receipt."""
        return wire.fiscal_result(self._call("last_document"))

    def status(self) -> DeviceStatus:
        """Measured state of the device."""
        return wire.device_status(self._call("status"))

    def open_shift(self, cashier: str | None = None) -> ShiftReport:
        """Open a new shift; ``ShiftError`` if one is open already."""
        return wire.shift_report(self._call("open_shift", cashier))

    def close_shift(self, cashier: str | None = None) -> ShiftReport:
        """Close the open shift and return its Z report."""
        return wire.shift_report(self._call("close_shift", cashier))

    def x_report(self) -> ShiftReport:
        """Totals of the open shift so far."""
        return wire.shift_report(self._call("x_report"))

    def cash_operation(
        self, operation_id: str, kind: CashKind, amount: Kopecks, cashier: str | None
    ) -> CashResult:
        """Cash in or out, kept with ``operation_id``."""
        found = wire.cash_result(
            self._call("cash_operation", operation_id, kind.value, amount, cashier)
        )
        assert found is not None
        return found

    def find_cash_operation(self, operation_id: str) -> CashResult | None:
        """The cash operation kept with ``operation_id``, if it was done."""
        return wire.cash_result(self._call("find_cash_operation", operation_id))

    def confirm(self, fd: int) -> None:
        """Mark document ``fd`` acknowledged by the OFD."""
        self._call("confirm", fd)

    def confirm_many(self, fn: str, fds: Sequence[int]) -> None:
        """Mark all ``fds`` of FN ``fn`` acknowledged in one durable step."""
        if fds:
            self._call("confirm_many", fn, list(fds))

    def set_fault(self, fault: str | None) -> None:
        """Inject ``"out_of_paper"`` or ``"offline"``, or clear with ``None`` (persisted)."""
        self._call("set_fault", fault)

    def repeat_prints(self) -> int:
        """Print requests so far that named a receipt id fiscalized already."""
        count: int = self._call("repeat_prints")
        return count

    def close(self) -> None:
        """Ask the child to close its state file and exit; kill it if it does not in time."""
        self._stop(timeout=CLOSE_TIMEOUT_S)

    def _handshake(self, config: dict[str, Any], timeout: float) -> str:
        """Send the configuration and wait for the ready frame; the child's FN."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            wire.write_frame(self._proc.stdin, wire.pack(config))
            with selectors.DefaultSelector() as selector:
                selector.register(self._proc.stdout, selectors.EVENT_READ)
                if not selector.select(timeout):
                    raise ConfigError(f"the KKT emulator process did not start in {timeout} s")
            answer = wire.read_frame(self._proc.stdout)
        except (OSError, EOFError) as exc:
            message = f"the KKT emulator process exited during start-up ({self._exit_code()})"
            raise ConfigError(message) from exc
        if "error" in answer:
            error = wire.error_from_wire(answer["error"])
            if isinstance(error, KktAdapterError):
                raise error
            raise ConfigError(f"the KKT emulator could not start: {error}")
        fn: str = answer["ready"]["fn"]
        return fn

    def _exit_code(self) -> str:
        try:
            return f"exit code {self._proc.wait(timeout=CLOSE_TIMEOUT_S)}"
        except subprocess.TimeoutExpired:
            return "not exited"

    def _call(self, method: str, *args: Any) -> Any:
        """Send one request and wait for its answer; raise the error it carries."""
        with self._lock:
            if self._exited:
                raise DeviceError(OFFLINE_MESSAGE, reason="offline")
            self._next_id += 1
            request_id = self._next_id
            # Encoding first: a document that is not JSON fails here, and the link stays usable.
            frame = wire.pack({"id": request_id, "method": method, "args": args})
            answer = self._exchange(frame)
        if answer.get("id") != request_id:
            raise RuntimeError(f"the KKT emulator answered {answer.get('id')}, not {request_id}")
        if "error" in answer:
            raise wire.error_from_wire(answer["error"])
        return answer["ok"]

    def _exchange(self, frame: bytes) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            wire.write_frame(self._proc.stdin, frame)
            return wire.read_frame(self._proc.stdout)
        except (OSError, ValueError, EOFError) as exc:  # ValueError: a garbled frame
            self._exited = True
            raise DeviceError(OFFLINE_MESSAGE, reason="offline") from exc

    def _stop(self, timeout: float) -> None:
        """Send close, end the child's stdin, wait up to ``timeout`` s, then kill."""
        with self._lock:
            stdin = self._proc.stdin
            # OSError: the child is gone already, which is where this is heading anyway.
            with contextlib.suppress(OSError):
                if not self._exited and stdin is not None:
                    wire.write_frame(stdin, wire.pack({"id": 0, "method": "close", "args": []}))
            self._exited = True
            with contextlib.suppress(OSError):
                if stdin is not None:
                    stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
