"""The one SQLite toolkit of the buffer, the KKT emulator and the OFD emulator: connections
with the durability settings, versioned migrations, and the group-committing ``Database``."""

from kkt_adapter.sqlite.connection import apply_migrations, configure, connect, split_statements
from kkt_adapter.sqlite.database import WRITABLE, Database, Staged, StorageHealth

__all__ = [
    "WRITABLE",
    "Database",
    "Staged",
    "StorageHealth",
    "apply_migrations",
    "configure",
    "connect",
    "split_statements",
]
