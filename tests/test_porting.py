"""What code written for ``snowplow-tracker`` 1.1.0 relies on beyond the documented calls:
the contracts switch exported from the package root, and ``Tracker.flush()`` with an
emitter the user wrote. Events go to the embedded collector."""

from __future__ import annotations

import importlib
import json
import logging
import math
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import snowplow_threaded
from snowplow_threaded import (
    Emitter,
    PageView,
    ScreenView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Tracker,
    disable_contracts,
    enable_contracts,
)
from snowplow_threaded.collector import Collector
from snowplow_threaded.contracts import contracts_enabled

BAD_ELEMENT = {"name": "n", "value": "v", "nodeName": "INPUT", "type": "not-a-type"}


@pytest.fixture
def contracts_off() -> Iterator[None]:
    disable_contracts()
    try:
        yield
    finally:
        enable_contracts()


def import_reference() -> ModuleType:
    """``snowplow_tracker``, without the root handler its ``logging.basicConfig()`` adds."""
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        return importlib.import_module("snowplow_tracker")
    finally:
        root.handlers[:] = saved


def all_parameters(collector: Collector) -> list[dict[str, Any]]:
    """The tracker-protocol fields of every event received, good or bad."""
    return ([e.parameters for e in collector.good()]
            + [e.parameters or {} for e in collector.bad()])


def data_of(parameters: dict[str, Any]) -> Any:
    """The data of a self-describing event sent without base64."""
    return json.loads(parameters["ue_pr"])["data"]["data"]


# -- disable_contracts / enable_contracts -----------------------------------------------------


def test_the_switch_is_exported_from_the_root_and_contracts_start_enabled() -> None:
    assert {"disable_contracts", "enable_contracts"} <= set(snowplow_threaded.__all__)
    assert contracts_enabled()
    tracker = Tracker("t", Emitter("collector.example.com"))
    try:
        with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="not-a-type"):
            tracker.track_form_submit("form", elements=[BAD_ELEMENT])
        with pytest.raises(ValueError, match="page_url"):
            PageView("")
        with pytest.raises(ValueError, match="platform"):
            Subject().set_platform("nope")  # type: ignore[arg-type]
    finally:
        tracker.close(0)


def test_disabled_contracts_skip_the_references_checks(contracts_off: None,
                                                      micro_collector: Collector) -> None:
    emitter = Emitter(micro_collector.endpoint)
    tracker = Tracker("t", emitter, encode_base64=False)
    try:
        with pytest.warns(DeprecationWarning):
            tracker.track_form_submit("form", elements=[BAD_ELEMENT])
            tracker.track_form_change("form", "el", "DIV", "v", type_="bogus")  # type: ignore[arg-type]
            tracker.track_site_search([])
        tracker.track(StructuredEvent("", None))  # type: ignore[arg-type]
        tracker.track(PageView(""))
        tracker.track(PageView(5))  # type: ignore[arg-type]
        tracker.track(ScreenView("", "home"))
        odd = Subject().set_platform("nope").set_screen_resolution(0, -1)  # type: ignore[arg-type]
        tracker.track(StructuredEvent("c", "a", event_subject=odd))
        assert tracker.flush(timeout=10)
        assert micro_collector.wait_for(8, timeout=10)
    finally:
        tracker.close(5)
    received = all_parameters(micro_collector)
    assert len(received) == 8
    by_data = {json.dumps(data_of(p), sort_keys=True): p for p in received if "ue_pr" in p}
    assert {"formId": "form", "elements": [BAD_ELEMENT]} in map(json.loads, by_data)
    assert {"formId": "form", "elementId": "el", "nodeName": "DIV", "value": "v",
            "type": "bogus"} in map(json.loads, by_data)
    assert {"terms": []} in map(json.loads, by_data)
    assert {"id": "", "name": "home"} in map(json.loads, by_data)
    # a required field the contracts would have asked for is left out, not sent empty
    [se] = [p for p in received if p["e"] == "se" and "res" not in p]
    assert "se_ca" not in se and "se_ac" not in se
    assert sorted(p.get("url", "-") for p in received if p["e"] == "pv") == ["-", "5"]
    [subj] = [p for p in received if "res" in p]
    assert (subj["p"], subj["res"]) == ("nope", "0x-1")


def test_disabled_contracts_keep_the_checks_that_guard_sending(contracts_off: None) -> None:
    with pytest.raises(ValueError, match="method"):
        Emitter("collector.example.com", method="put")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        StructuredEvent("c", "a", value=math.nan)
    with pytest.raises(ValueError):
        SelfDescribing(SelfDescribingJson("not-a-schema-uri", {}))
    with pytest.raises(ValueError, match="namespace"):
        Tracker("", Emitter("collector.example.com"))
    with pytest.raises(ValueError, match="batch_size"):
        Emitter("collector.example.com", batch_size=0)


def test_enable_contracts_checks_again(contracts_off: None) -> None:
    assert not contracts_enabled()
    PageView("")
    enable_contracts()
    assert contracts_enabled()
    with pytest.raises(ValueError, match="page_url"):
        PageView("")


def test_the_references_switch_does_not_skip_its_empty_string_check() -> None:
    """Why the docs say the reference is wrong here: ``non_empty_string`` there reads
    ``enabled and type(s) is not str or not s``, so an empty value raises even when
    disabled. Ours skips it."""
    reference = import_reference()
    reference.disable_contracts()
    try:
        with pytest.raises(ValueError):
            reference.PageView("")
    finally:
        reference.enable_contracts()


# -- Tracker.flush() with an emitter that is not ours -----------------------------------------


class InputOnly:
    """A user's emitter with nothing but ``input()``: the reference skips it on flush."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        self.calls: list[str] = []

    def input(self, payload: dict[str, Any]) -> None:
        self.payloads.append(payload)


def user_emitter(*methods: str) -> Any:
    """An :class:`InputOnly` that also has *methods* (``flush``, ``sync_flush``), each
    recording its calls in ``calls``."""
    def recorder(name: str) -> Any:
        return lambda self: self.calls.append(name)

    return type("UserEmitter", (InputOnly,), {name: recorder(name) for name in methods})()


def test_flush_calls_what_a_foreign_emitter_has(micro_collector: Collector) -> None:
    ours = Emitter(micro_collector.endpoint, batch_size=100, flush_interval=60)
    both, flush_only = user_emitter("sync_flush", "flush"), user_emitter("flush")
    sync_only, bare = user_emitter("sync_flush"), InputOnly()
    tracker = Tracker("t", [bare, both, ours, flush_only, sync_only])
    try:
        tracker.track(StructuredEvent("c", "a"))
        assert tracker.flush() is True  # input() only: skipped, no AttributeError
        assert len(micro_collector.good()) == 1  # ours was flushed, blocking
        assert (both.calls, flush_only.calls, sync_only.calls) == (
            ["sync_flush"], ["flush"], ["sync_flush"])
        assert tracker.flush(is_async=True) is True
        assert (both.calls, flush_only.calls, sync_only.calls) == (
            ["sync_flush", "flush"], ["flush", "flush"], ["sync_flush"])
        assert len(bare.payloads) == len(both.payloads) == 1
    finally:
        tracker.close(5)


def test_flush_of_a_reference_emitter_waits_for_its_send(micro_collector: Collector) -> None:
    """A ``snowplow_tracker.AsyncEmitter`` next to ours: a blocking flush is its
    ``sync_flush()``, which returns once its send is done."""
    reference = import_reference()
    theirs = reference.AsyncEmitter(micro_collector.endpoint, protocol="http", batch_size=100)
    sent = threading.Event()
    theirs.on_success = lambda payloads: sent.set()
    tracker = Tracker("t", [theirs])
    tracker.track(StructuredEvent("c", "a"))
    assert not sent.is_set()
    assert tracker.flush() is True
    assert sent.is_set() and micro_collector.wait_for(1, timeout=5)


def test_flush_raises_what_a_foreign_emitter_raises() -> None:
    class Broken(InputOnly):
        def sync_flush(self) -> None:
            raise RuntimeError("theirs")

    with pytest.raises(RuntimeError, match="theirs"):
        Tracker("t", Broken()).flush()
