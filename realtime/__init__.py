"""realtime: a real-time availability server for booking systems."""

__version__ = "0.1.0"
