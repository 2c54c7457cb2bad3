"""The adapter's one narrow client to the OFD."""

from kkt_adapter.ofd.client import (
    AsgiOfdClient,
    Delivered,
    HttpOfdClient,
    OfdClient,
    Outcome,
    Rejected,
    Submission,
    Transient,
    classify,
)

__all__ = [
    "AsgiOfdClient",
    "Delivered",
    "HttpOfdClient",
    "OfdClient",
    "Outcome",
    "Rejected",
    "Submission",
    "Transient",
    "classify",
]
