"""Shared fixtures: a real HTTP collector on 127.0.0.1 per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.collector import Collector

pytest_plugins = ["pytester"]


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as c:
        yield c
