"""The adapter's one narrow client to the OFD."""

from kkt_adapter.ofd.client import (
    AsgiOfdClient,
    Delivered,
    HttpOfdClient,
    OfdAnswer,
    OfdClient,
    Rejected,
    Submission,
    Transient,
    call_outcome,
    classify,
)

__all__ = [
    "AsgiOfdClient",
    "Delivered",
    "HttpOfdClient",
    "OfdAnswer",
    "OfdClient",
    "Rejected",
    "Submission",
    "Transient",
    "call_outcome",
    "classify",
]
