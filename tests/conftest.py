"""Shared fixtures: the embedded collector on 127.0.0.1, one per test (``collector``) or
one per module (``micro``, reset for each test by ``micro_collector``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from snowplow_threaded.collector import Collector
from tests.helpers import ServerErrors

pytest_plugins = ["pytester"]

# Every test talks to servers on 127.0.0.1 only: a proxy set in the environment (as on
# many company machines) must not take that traffic, in this process or in the servers
# and workers the tests start (requests and this library honour NO_PROXY). The tests of
# a proxy from the environment (test_proxy.py) set their own.
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(filter(None, (os.environ.get(_name), "127.0.0.1", "localhost")))


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A running embedded collector for this test, checked at teardown for errors of its
    own."""
    with ServerErrors() as errors:
        with Collector(max_requests=100_000) as c:
            yield c
        errors.check()


@pytest.fixture(scope="module")
def micro() -> Iterator[Collector]:
    """The embedded collector, one per test module."""
    with ServerErrors() as errors:
        with Collector() as c:
            yield c
        errors.check()


@pytest.fixture
def micro_collector(micro: Collector) -> Iterator[Collector]:
    """``micro``, emptied, serving and without fault rules, for one test."""
    micro.reset()
    micro.resume()
    micro.faults.clear()
    micro.up()
    yield micro
    micro.resume()
    micro.faults.clear()
