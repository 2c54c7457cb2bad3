"""Delivery of fiscal documents to the OFD: worker, backoff, circuit breaker."""

from kkt_adapter.delivery.backoff import Backoff
from kkt_adapter.delivery.breaker import BreakerConfig, BreakerState, CircuitBreaker
from kkt_adapter.delivery.worker import DeliveryWorker, WorkerConfig

__all__ = [
    "Backoff",
    "BreakerConfig",
    "BreakerState",
    "CircuitBreaker",
    "DeliveryWorker",
    "WorkerConfig",
]
