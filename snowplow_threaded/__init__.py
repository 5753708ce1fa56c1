"""snowplow_threaded: a Snowplow tracker for Python server processes.

The API of the Snowplow Python tracker (``snowplow-tracker`` 1.1.0), with an emitter whose
``track()`` never blocks, that batches over kept-alive connections from worker threads,
and that survives fork and exit. See README.md.
"""

import logging

from ._version import __version__
from .contracts import disable_contracts, enable_contracts
from .disk import DiskEventStore, DiskStoreError
from .emitter_configuration import EmitterConfiguration
from .emitters import AsyncEmitter, Emitter
from .event_store import BatchStore, EventStore, InMemoryEventStore
from .events import Event, PagePing, PageView, ScreenView, SelfDescribing, StructuredEvent
from .free_threading import GILDisabledWarning, warn_if_gil_disabled
from .self_describing_json import SelfDescribingJson
from .settings import EmitterSettings
from .snowplow import DuplicateNamespaceError, Snowplow
from .stats import EmitterStats
from .subject import Subject
from .tracker import Tracker
from .tracker_configuration import TrackerConfiguration

logger = logging.getLogger("snowplow_threaded")
logger.addHandler(logging.NullHandler())
warn_if_gil_disabled()  # a free-threaded build without the GIL: see free_threading.py

__all__ = [
    "AsyncEmitter",
    "BatchStore",
    "DiskEventStore",
    "DiskStoreError",
    "DuplicateNamespaceError",
    "Emitter",
    "EmitterConfiguration",
    "EmitterSettings",
    "EmitterStats",
    "Event",
    "EventStore",
    "GILDisabledWarning",
    "InMemoryEventStore",
    "PagePing",
    "PageView",
    "ScreenView",
    "SelfDescribing",
    "SelfDescribingJson",
    "Snowplow",
    "StructuredEvent",
    "Subject",
    "Tracker",
    "TrackerConfiguration",
    "__version__",
    "disable_contracts",
    "enable_contracts",
]
