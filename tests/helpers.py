"""Small helpers over the embedded collector's public API, shared by the tests."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from snowplow_threaded.collector import Collector

#: Path of the POST route (any prefix in front of it is accepted).
TP2 = "/com.snowplowanalytics.snowplow/tp2"


def accepted_events(collector: Collector) -> list[dict[str, Any]]:
    """The events as sent, of every tracker request the collector took (answered, or
    announced, 2xx), in arrival order: what a real collector would have kept."""
    return [event for r in collector.requests() if r.accepted for event in r.events]


def sent_events(collector: Collector) -> list[dict[str, Any]]:
    """The events as sent, of every tracker request settled, whatever the answer."""
    return [event for r in collector.requests() for event in r.events]


def eventually(predicate: Callable[[], bool], timeout: float = 10.0,
               interval: float = 0.005) -> bool:
    """Poll *predicate* until it holds or *timeout* seconds pass (for state that signals
    nothing, such as an emitter's stats); returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(interval)
    return True


def gaps(collector: Collector) -> list[float]:
    """Seconds between each tracker request's answer and the receipt of the next one."""
    records = collector.requests()
    return [nxt.received_at - prev.answered_at
            for prev, nxt in itertools.pairwise(records)
            if prev.answered_at is not None]


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


def in_ci() -> bool:
    """True in CI (``CI=true``, as CI services and ``.ci/run``'s caller set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require(available: bool, what: str) -> None:
    """Skip the test when *what* (a tool the test drives) is missing, except in CI, where
    that fails it: CI installs everything the suite uses, so a missing tool there is a
    broken set-up, never a reason to pass."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{what} is missing (CI=true: .ci/run must install it)", pytrace=False)
    pytest.skip(f"{what} is missing")


DOCS = Path(__file__).resolve().parent.parent / "docs"


def docs_block(page: str, mark: str) -> str:
    """The Python block right after *mark* (an HTML comment) in ``docs/<page>``: examples
    the docs show are run by the tests as written."""
    after = (DOCS / page).read_text(encoding="utf-8").split(mark, 1)[1]
    match = re.match(r"\s*```python\n(.*?)\n```", after, re.DOTALL)
    assert match, f"docs/{page}: no python block after {mark!r}"
    return match.group(1)


def micro_api(collector: Collector, route: str, body: Any = None) -> Any:
    """The Micro REST API of *collector*: GET ``/micro/<route>``, or POST *body* as JSON;
    asserts a 200 JSON answer and returns it decoded."""
    url = collector.endpoint + "/micro/" + route
    response = (requests.get(url, timeout=10) if body is None
                else requests.post(url, json=body, timeout=10))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    return response.json()
