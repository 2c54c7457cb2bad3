"""kkt-adapter: offline-first fiscal receipt adapter for Russian POS terminals (54-FZ)."""

__version__ = "0.1.0"
