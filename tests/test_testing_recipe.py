"""The docs a user porting from ``snowplow-tracker`` 1.1.0 follows: the testing recipe in
docs/testing.md runs as written in a fresh pytest (pytester, the installed plugin's
fixtures), and docs/porting.md names every public emitter or store attribute of the
reference that is gone here."""

from __future__ import annotations

import importlib
import logging
import re

import pytest

import snowplow_threaded
from tests.helpers import DOCS, docs_block

RECIPE_MARK = "<!-- the recipe: run by tests/test_testing_recipe.py -->"


def recipe() -> str:
    """The Python block right after the recipe's mark in docs/testing.md."""
    return docs_block("testing.md", RECIPE_MARK)


def test_the_recipe_passes_as_written(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_recipe=recipe())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_recipe_fails_when_the_code_under_test_does(pytester: pytest.Pytester) -> None:
    """The recipe's assertions can fail: with checkout() tracking a different value, every
    test that checks the value fails."""
    broken = recipe().replace("value=total", "value=total + 1")
    pytester.makepyfile(test_recipe=broken)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)


def _public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def test_the_porting_docs_name_what_is_gone() -> None:
    root = logging.getLogger()
    saved = list(root.handlers)
    try:  # without the root handler the reference's logging.basicConfig() adds
        reference = importlib.import_module("snowplow_tracker")
    finally:
        root.handlers[:] = saved
    ours_emitter = snowplow_threaded.Emitter("https://collector.example.com")
    ours_async = snowplow_threaded.AsyncEmitter("https://collector.example.com")
    theirs_async = reference.AsyncEmitter("collector.example.com", thread_count=1)
    try:
        gone = (_public(reference.Emitter("collector.example.com")) - _public(ours_emitter)
                | _public(theirs_async) - _public(ours_async)
                | _public(reference.event_store.InMemoryEventStore(logging.getLogger()))
                - _public(snowplow_threaded.InMemoryEventStore()))
    finally:
        ours_emitter.close(0)
        ours_async.close(0)
    assert {"send_events", "http_post", "event_buffer", "timer"} <= gone
    porting = (DOCS / "porting.md").read_text(encoding="utf-8")
    quoted = " ".join(re.findall(r"`([^`]*)`", porting))
    missing = sorted(name for name in gone if not re.search(rf"\b{name}\b", quoted))
    assert missing == [], f"docs/porting.md does not say what replaces {missing}"
