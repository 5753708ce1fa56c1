"""The collector's event log (collector/store.py): its name, its memory estimate and its
bounds."""

from __future__ import annotations

import snowplow_threaded
import snowplow_threaded.collector as collector_package
from snowplow_threaded.collector import EventLog


def test_the_collectors_store_is_not_named_like_the_event_store_protocol() -> None:
    assert hasattr(snowplow_threaded, "EventStore")  # the tracker's store protocol
    assert not hasattr(collector_package, "EventStore")
    assert "EventLog" in collector_package.__all__ and EventLog.__module__.endswith(".store")
