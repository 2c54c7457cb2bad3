"""The KKT device: the narrow interface and the bundled emulator."""

from kkt_adapter.device.base import DeviceStatus, KktDevice, ShiftReport
from kkt_adapter.device.emulator import MOSCOW, EmulatedKkt

__all__ = [
    "MOSCOW",
    "DeviceStatus",
    "EmulatedKkt",
    "KktDevice",
    "ShiftReport",
]
