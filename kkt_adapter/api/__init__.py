"""The adapter's HTTP API."""

from kkt_adapter.api.app import create_app

__all__ = ["create_app"]
