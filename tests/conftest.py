"""Shared fixtures: the embedded collector on 127.0.0.1, one per test (``collector``) or
one per module (``micro``, reset for each test by ``micro_collector``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from snowplow_threaded.collector import Collector

pytest_plugins = ["pytester"]

# Every test talks to servers on 127.0.0.1 only: a proxy set in the environment (as on
# many company machines) must not take that traffic, in this process or in the servers
# and workers the tests start (requests and this library honour NO_PROXY). The tests of
# a proxy from the environment (test_proxy.py) set their own.
for _name in ("NO_PROXY", "no_proxy"):
    os.environ[_name] = ",".join(filter(None, (os.environ.get(_name), "127.0.0.1", "localhost")))


class ServerErrors(logging.Handler):
    """Keeps the errors the collector's server logs (a handler that raised, a loop that
    died): a test passes only if there are none."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> ServerErrors:
        logging.getLogger("snowplow_threaded.collector").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("snowplow_threaded.collector").removeHandler(self)

    def check(self) -> None:
        assert not self.records, "the collector logged errors:\n" + "\n".join(
            self.format(r) + (f"\n{r.exc_text or ''}" if r.exc_info else "")
            for r in self.records)


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
