"""The KKT device: the narrow interface, the bundled emulator and the fiscal sign."""

from kkt_adapter.device.base import (
    DeviceStatus,
    FfdDocument,
    FiscalResult,
    KktDevice,
    ShiftReport,
)
from kkt_adapter.device.emulator import MOSCOW, EmulatedKkt
from kkt_adapter.device.sign import canonical_bytes, fiscal_sign, qr_string, verify_sign

__all__ = [
    "MOSCOW",
    "DeviceStatus",
    "EmulatedKkt",
    "FfdDocument",
    "FiscalResult",
    "KktDevice",
    "ShiftReport",
    "canonical_bytes",
    "fiscal_sign",
    "qr_string",
    "verify_sign",
]
