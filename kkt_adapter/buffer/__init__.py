"""The durable SQLite buffer of receipts, keys, events and the DLQ."""

from kkt_adapter.buffer.refunds import RefundClaim
from kkt_adapter.buffer.store import STATUSES, Buffer, IntakeStart, NewReceipt

__all__ = ["STATUSES", "Buffer", "IntakeStart", "NewReceipt", "RefundClaim"]
