"""The embedded collector: a Snowplow Micro-compatible collector in pure Python.

``python -m snowplow_threaded collector`` runs it from the command line; from Python::

    from snowplow_threaded.collector import Collector

    with Collector() as collector:
        ...  # point a tracker at collector.endpoint
        collector.wait_for(10)
        good, bad = collector.good(), collector.bad()

It accepts the Snowplow tracker protocol (``POST .../tp2``, ``GET .../i``), validates every
event against the protocol and its Iglu schemas (all of Iglu Central is bundled; plus
yours), keeps good and bad events in bounded memory and serves Snowplow
Micro's REST API (``/micro/all``, ``/micro/good``, ``/micro/bad``, ``/micro/reset``).
For tests it also keeps the tracker requests it was sent (:meth:`Collector.requests`) and
misbehaves on purpose when told to (:attr:`Collector.faults`, :meth:`Collector.down`):
status codes, ``Retry-After``, delays, connection resets and closes.
Standard library only; importing this package starts nothing.
"""

from .event_log import EventLog
from .faults import Fault, FaultRule, Faults
from .http_types import Limits
from .iglu import InvalidSchemaURI, Resolver, SchemaKey, SchemaUnavailable, parse_schema_uri
from .protocol import Checked, EventChecker
from .schema_types import SchemaError, ValidationError
from .server import Collector
from .store import BadEvent, GoodEvent, RequestInfo, Summary
from .traffic import TrackerRequest
from .validator import Validator

__all__ = [
    "BadEvent",
    "Checked",
    "Collector",
    "EventChecker",
    "EventLog",
    "Fault",
    "FaultRule",
    "Faults",
    "GoodEvent",
    "InvalidSchemaURI",
    "Limits",
    "RequestInfo",
    "Resolver",
    "SchemaError",
    "SchemaKey",
    "SchemaUnavailable",
    "Summary",
    "TrackerRequest",
    "ValidationError",
    "Validator",
    "parse_schema_uri",
]
