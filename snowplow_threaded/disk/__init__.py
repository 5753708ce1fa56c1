"""The disk buffer: :class:`DiskEventStore` keeps events in a directory through crashes,
restarts and collector outages (see docs/disk-buffer.md)."""

from .owners import DiskStoreError
from .store import DiskEventStore

__all__ = ["DiskEventStore", "DiskStoreError"]
