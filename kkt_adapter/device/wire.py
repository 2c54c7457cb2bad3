"""The link between the adapter and the KKT emulator process: frames and what travels in them.

A frame is a 4-byte big-endian length and that many bytes of JSON (orjson). The adapter sends
``{"id", "method", "args"}``; the device answers ``{"id", "ok": value}`` or
``{"id", "error": {...}}``. Results travel as their dataclass fields (datetimes as ISO 8601
strings) and are rebuilt here, so a result read over the link equals the one the emulator made.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import IO, Any

import orjson

from kkt_adapter import errors
from kkt_adapter.device.base import CashResult, DeviceStatus, JournalEntry, ShiftReport
from kkt_adapter.domain.fiscal import FiscalResult
from kkt_adapter.domain.shift_totals import CashKind, CashMovement, ShiftTotals, VatFigures
from kkt_adapter.errors import DeviceError, KktAdapterError

_HEADER = struct.Struct(">I")
# Far above any fiscal document; a larger length means the stream is out of step.
MAX_FRAME_BYTES = 64 * 1024 * 1024

_ERROR_CLASSES: dict[str, type[KktAdapterError]] = {
    name: value
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, KktAdapterError)
}


def pack(message: object) -> bytes:
    """One frame holding ``message`` (raises ``orjson.JSONEncodeError`` if not JSON-able)."""
    body = orjson.dumps(message)
    return _HEADER.pack(len(body)) + body


def write_frame(stream: IO[bytes], frame: bytes) -> None:
    """Send a packed frame at once: the peer waits for all of it."""
    stream.write(frame)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next message; ``EOFError`` when the stream ends, even in the middle of a frame."""
    header = _read_exactly(stream, _HEADER.size)
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise EOFError(f"frame of {length} bytes: the stream is out of step")
    return orjson.loads(_read_exactly(stream, length))


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    # A buffered reader returns short only at end of stream.
    if data is None or len(data) < size:
        raise EOFError("the peer closed the link")
    return data


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """The error answer for ``exc``, enough to raise the same error on the other side."""
    if isinstance(exc, KktAdapterError):
        return {
            "type": type(exc).__name__,
            "message": exc.message,
            "reason": getattr(exc, "reason", None),
            "code": exc.code,
            "details": exc.details,
            "retry_after": exc.retry_after,
        }
    return {"type": type(exc).__name__, "message": str(exc)}


def error_from_wire(error: dict[str, Any]) -> Exception:
    """The exception an error answer describes: the same ``kkt_adapter.errors`` class.

    ``ValueError`` (a programming error, e.g. an unknown fault) stays a ``ValueError``; any
    other failure becomes a ``RuntimeError``, which callers treat as "outcome unknown".
    """
    kind, message = error["type"], error["message"]
    cls = _ERROR_CLASSES.get(kind)
    if cls is DeviceError:
        return DeviceError(message, reason=error["reason"], retry_after=error["retry_after"])
    if cls is not None:
        return cls(
            message, code=error["code"], details=error["details"], retry_after=error["retry_after"]
        )
    if kind == "ValueError":
        return ValueError(message)
    return RuntimeError(f"the KKT emulator failed: {kind}: {message}")


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def fiscal_result(value: dict[str, Any] | None) -> FiscalResult | None:
    """A ``FiscalResult`` (or ``None``) from its wire form."""
    if value is None:
        return None
    return FiscalResult(**{**value, "datetime": datetime.fromisoformat(value["datetime"])})


def journal(value: list[dict[str, Any]]) -> list[JournalEntry]:
    """Journal entries from their wire form."""
    entries = []
    for entry in value:
        result = fiscal_result(entry["result"])
        assert result is not None
        entries.append(JournalEntry(result, bool(entry["confirmed"])))
    return entries


def shift_report(value: dict[str, Any]) -> ShiftReport:
    """A ``ShiftReport`` from its wire form."""
    summary = value.get("summary")
    return ShiftReport(
        **{
            **value,
            "opened_at": _when(value["opened_at"]),
            "closed_at": _when(value["closed_at"]),
            "summary": None if summary is None else _shift_totals(summary),
        }
    )


def _shift_totals(value: dict[str, Any]) -> ShiftTotals:
    return ShiftTotals(
        **{
            **value,
            "vat": {
                kind: {rate: VatFigures(**figures) for rate, figures in rates.items()}
                for kind, rates in value["vat"].items()
            },
            "cash_in": CashMovement(**value["cash_in"]),
            "cash_out": CashMovement(**value["cash_out"]),
        }
    )


def cash_result(value: dict[str, Any] | None) -> CashResult | None:
    """A ``CashResult`` (or ``None``) from its wire form."""
    if value is None:
        return None
    return CashResult(
        **{**value, "kind": CashKind(value["kind"]), "at": datetime.fromisoformat(value["at"])}
    )


def device_status(value: dict[str, Any]) -> DeviceStatus:
    """A ``DeviceStatus`` from its wire form."""
    return DeviceStatus(
        **{
            **value,
            "shift_opened_at": _when(value["shift_opened_at"]),
            "oldest_unconfirmed_at": _when(value["oldest_unconfirmed_at"]),
            "fn_valid_until": _when(value.get("fn_valid_until")),
        }
    )
