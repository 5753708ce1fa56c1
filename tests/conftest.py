"""Shared fixtures: a real HTTP collector on 127.0.0.1 per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from snowplow_threaded.collector import Collector as EmbeddedCollector
from tests.collector import Collector

pytest_plugins = ["pytester"]

# Every test talks to servers on 127.0.0.1 only: a proxy set in the environment (as on
# many company machines) must not take that traffic, in this process or in the servers
# and workers the tests start (requests and this library honour NO_PROXY).
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(filter(None, (os.environ.get(_name), "127.0.0.1", "localhost")))


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c


@pytest.fixture(scope="module")
def micro() -> Iterator[EmbeddedCollector]:
    """The embedded collector (``snowplow_threaded.collector``), one per test module."""
    with EmbeddedCollector() as c:
        yield c


@pytest.fixture
def micro_collector(micro: EmbeddedCollector) -> Iterator[EmbeddedCollector]:
    """``micro``, emptied and serving, for one test."""
    micro.reset()
    micro.resume()
    yield micro
    micro.resume()
