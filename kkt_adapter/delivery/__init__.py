"""Delivery of fiscal documents to the OFD: worker, backoff, circuit breaker."""

from kkt_adapter.delivery.backoff import Backoff
from kkt_adapter.delivery.breaker import BreakerConfig, CircuitBreaker
from kkt_adapter.delivery.worker import DeliveryWorker, WorkerConfig
from kkt_adapter.domain.lifecycle import BreakerState

__all__ = [
    "Backoff",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "DeliveryWorker",
    "WorkerConfig",
]
