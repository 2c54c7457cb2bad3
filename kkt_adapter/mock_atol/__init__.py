"""An EMULATOR of the ATOL driver's web server (``kkt-adapter mock-atol``)."""

from kkt_adapter.mock_atol.app import create_mock_atol_app

__all__ = ["create_mock_atol_app"]
