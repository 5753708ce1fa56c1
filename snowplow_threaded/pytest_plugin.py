"""pytest plugin (installed with the package): the ``snowplow_collector`` and
``snowplow_deterministic`` fixtures.

A test that asks for it gets a running :class:`~snowplow_threaded.collector.Collector` on a
free port of 127.0.0.1, stopped when the test ends::

    def test_checkout_is_tracked(snowplow_collector):
        tracker = Tracker("t", Emitter(snowplow_collector.endpoint))
        checkout(tracker)                                   # your code
        assert snowplow_collector.wait_for(1, timeout=5)
        assert not snowplow_collector.bad()
        [event] = snowplow_collector.events()               # canonical events
        assert event["se_action"] == "checkout"

It offers ``endpoint``, ``events()``, ``good()``, ``bad()``, ``reset()``,
``wait_for(count, timeout)`` and the rest of the collector's API, fault rules included, to
test your app through an outage::

    def test_checkout_survives_an_outage(snowplow_collector):
        snowplow_collector.faults(503, times=3)             # the next 3 requests fail
        snowplow_collector.faults(reset="before", times=1)  # then one connection reset
        ...

Your Iglu schemas come from the ``snowplow_schemas`` ini option (directories, relative to
the ini file), ``--snowplow-schemas DIR`` on the command line, or the marker
``@pytest.mark.snowplow_collector(schemas=[...], max_events=..., faults=[...])``, whose
``faults`` are the keyword arguments of ``collector.faults(...)``, one dict per rule, e.g.
``faults=[{"status": 503, "times": 2}]``.

``snowplow_deterministic`` makes event ids a sequence and fixes the tracker's clock for the
test (:func:`snowplow_threaded.testing.deterministic_events`)::

    def test_ids_and_times(snowplow_deterministic):
        eid = tracker.track(StructuredEvent("shop", "checkout"))
        assert eid == snowplow_deterministic.event_id(1)
        snowplow_deterministic.advance(1_000)       # now_ms: the dtm and stm sent

Tests that do not use the fixtures pay nothing: the collector is imported and started only
when its fixture is requested.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .collector import Collector
    from .testing import Deterministic

__all__ = ["snowplow_collector", "snowplow_deterministic"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("snowplow_schemas", type="paths", default=[],
                  help="directories of Iglu schemas for the snowplow_collector fixture")
    parser.addoption("--snowplow-schemas", action="append", default=[], metavar="DIR",
                     help="a directory of Iglu schemas for the snowplow_collector fixture "
                          "(repeatable)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "snowplow_collector(schemas=None, max_events=None, faults=None): "
                   "settings of the snowplow_collector fixture for this test (faults: "
                   "keyword arguments of collector.faults(), one dict per rule)")


@pytest.fixture
def snowplow_collector(request: pytest.FixtureRequest) -> Iterator[Collector]:
    """A running collector for this test (stopped afterwards)."""
    from .collector import Collector

    config = request.config
    schemas: list[Path] = [Path(p) for p in config.getini("snowplow_schemas")]
    schemas += [Path(p) for p in config.getoption("snowplow_schemas") or []]
    options: dict[str, Any] = {}
    faults: list[dict[str, Any]] = []
    marker = request.node.get_closest_marker("snowplow_collector")
    if marker is not None:
        schemas += [Path(p) for p in marker.kwargs.get("schemas") or []]
        if marker.kwargs.get("max_events") is not None:
            options["max_events"] = marker.kwargs["max_events"]
        faults = list(marker.kwargs.get("faults") or [])
    collector = Collector(schemas=schemas, **options)
    for rule in faults:
        collector.faults(**rule)
    with collector:
        yield collector


@pytest.fixture
def snowplow_deterministic() -> Iterator[Deterministic]:
    """Event ids event_id(1), event_id(2), ... and a clock fixed at now_ms, for this test."""
    from .testing import deterministic_events

    with deterministic_events() as fixed:
        yield fixed
