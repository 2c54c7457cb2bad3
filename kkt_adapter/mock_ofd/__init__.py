"""The OFD emulator (``kkt-adapter mock-ofd``): a standalone server for tests, demos and benchmarks.

Not a real OFD, and labelled as one everywhere it speaks. See DESIGN §5 for its contract.
"""

from kkt_adapter.mock_ofd.app import create_mock_ofd_app
from kkt_adapter.mock_ofd.modes import Control, Mode, ModeSettings

__all__ = ["Control", "Mode", "ModeSettings", "create_mock_ofd_app"]
