"""Wire compatibility with the reference tracker (``snowplow-tracker`` 1.1.0).

The same calls go through the reference (``snowplow_tracker``, POST, ``batch_size=1``) and
through ours (POST, then GET), each to its own embedded collector; the received events are
compared field by field (and each must be good). Fields that differ by nature are ignored:
``eid`` (random), ``dtm``/``stm`` (clock) and ``tv`` (ours is ``py-threaded-<version>``).

Intentional differences (asserted, not ignored):

* ``tv`` is ``py-threaded-<version>`` (reference: ``py-1.1.0``).
* An event subject overrides only the fields it set. The reference's ``Subject`` always
  carries ``p=pc``, so an event subject silently resets the tracker subject's platform to
  ``pc`` (a reference bug); ours keeps the tracker subject's platform.
* ``stm`` is in milliseconds; the reference truncates it to whole seconds (``...000``).
* Items of ``track_ecommerce_transaction`` without ``tstamp`` carry ``ttm`` = "now" in both
  trackers (the transaction's time); it is checked against a time window, not compared.
"""

from __future__ import annotations

import base64
import importlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import snowplow_threaded as ours
from snowplow_threaded._version import TRACKER_VERSION, __version__
from snowplow_threaded.collector import Collector, TrackerRequest
from tests.helpers import ServerErrors, accepted_events
from tests.schemas import (
    context_entities,
    decode_self_describing,
    unstruct_event,
    validate_event,
    validate_post_body,
)


def _import_reference() -> ModuleType:
    """Import ``snowplow_tracker`` without keeping the handler its ``logging.basicConfig()``
    adds to the root logger (which would leak into other tests)."""
    root = logging.getLogger()
    saved = list(root.handlers)
    try:
        module = importlib.import_module("snowplow_tracker")
    finally:
        root.handlers[:] = saved
    logging.getLogger("snowplow_tracker").setLevel(logging.WARNING)
    for name in ("snowplow_tracker.emitters", "snowplow_tracker.snowplow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return module


ref = _import_reference()

POST_PATH = "/com.snowplowanalytics.snowplow/tp2"
TTM = 1_700_000_000_123
SCREEN_ID = "5e0a1b8c-3f5d-4c7e-9a2b-1c2d3e4f5a6b"
PREVIOUS_ID = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
UNICODE = "Grüße, 東京 🚀 «ç»"
IGNORED = {"eid", "dtm", "stm", "tv"}
JSON_FIELDS = ("ue_pr", "ue_px", "co", "cx")


def _subject(m: ModuleType) -> Any:
    """A tracker subject with all 13 setters called."""
    return (
        m.Subject()
        .set_platform("srv")
        .set_user_id("user-1")
        .set_screen_resolution(1920, 1080)
        .set_viewport(800, 600)
        .set_color_depth(24)
        .set_timezone("Europe/Berlin")
        .set_lang("de")
        .set_domain_user_id("duid-1")
        .set_domain_session_id("6d1c5b2a-6f8e-4e1d-9c3b-2a1f0e9d8c7b")
        .set_domain_session_index(3)
        .set_ip_address("203.0.113.7")
        .set_useragent("Mozilla/5.0 (X11) " + UNICODE)
        .set_network_user_id("8b5c6a4e-3d2f-4a1b-9c8d-7e6f5a4b3c2d")
    )


def _event_subject(m: ModuleType) -> Any:
    """An event subject that sets some fields but not the platform."""
    return m.Subject().set_user_id("event-user").set_ip_address("198.51.100.1").set_lang("fr")


def _contexts(m: ModuleType) -> list[Any]:
    return [
        m.SelfDescribingJson(
            "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0",
            {"id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"},
        ),
        m.SelfDescribingJson("iglu:com.acme/user/jsonschema/1-0-0",
                             {"tier": "gold", "name": UNICODE, "n": 1.5, "tags": ["a", "b"]}),
    ]


def _items() -> list[dict[str, Any]]:
    # fresh dicts per call: the reference mutates them
    return [
        {"sku": "sku-1", "price": 19.99, "quantity": 2, "name": "Chair " + UNICODE,
         "category": "furniture"},
        {"sku": "sku-2", "price": 5, "quantity": 1},
    ]


Call = Callable[[ModuleType, Any, dict[str, Any]], None]


def _calls() -> list[tuple[str, Call]]:
    """Every event type and legacy method. ``kw`` holds the common keyword arguments
    (``tstamp``/``true_timestamp`` and ``event_subject``) of the current variant."""

    def ev(kw: dict[str, Any]) -> dict[str, Any]:
        return {"true_timestamp": kw["tstamp"], "event_subject": kw["event_subject"]}

    def sdj(m: ModuleType, data: dict[str, Any]) -> Any:
        return m.SelfDescribingJson("iglu:com.acme/checkout/jsonschema/1-0-0", data)

    return [
        ("PageView", lambda m, t, kw: t.track(m.PageView(
            page_url="https://example.com/p?q=" + UNICODE, page_title="Title " + UNICODE,
            referrer="https://ref.example.com/", context=_contexts(m), **ev(kw)))),
        ("PagePing", lambda m, t, kw: t.track(m.PagePing(
            page_url="https://example.com/ping", page_title="Ping", referrer="https://r/",
            min_x=0, max_x=100, min_y=10, max_y=500, **ev(kw)))),
        ("ScreenView", lambda m, t, kw: t.track(m.ScreenView(
            id_=SCREEN_ID, name="Home " + UNICODE, type="feed", previous_name="Login",
            previous_id=PREVIOUS_ID, previous_type="form", transition_type="push",
            context=_contexts(m), **ev(kw)))),
        ("StructuredEvent", lambda m, t, kw: t.track(m.StructuredEvent(
            category="shop", action="add " + UNICODE, label="lbl", property_="prop",
            value=2.5, **ev(kw)))),
        ("SelfDescribing", lambda m, t, kw: t.track(m.SelfDescribing(
            sdj(m, {"total": 42.5, "note": UNICODE, "items": [1, 2], "ok": True}), **ev(kw)))),
        ("SelfDescribing+context", lambda m, t, kw: t.track(m.SelfDescribing(
            sdj(m, {"total": 1}), context=_contexts(m), **ev(kw)))),
        ("track_page_view", lambda m, t, kw: t.track_page_view(
            "https://example.com/" + UNICODE, "T " + UNICODE, "https://ref/",
            context=_contexts(m), **kw)),
        ("track_page_ping", lambda m, t, kw: t.track_page_ping(
            "https://example.com/", "T", "https://ref/", 1, 2, 3, 4, **kw)),
        ("track_link_click", lambda m, t, kw: t.track_link_click(
            "https://example.com/target", "link-id", ["c1", "c2"], "_blank",
            "Click " + UNICODE, context=_contexts(m), **kw)),
        ("track_add_to_cart", lambda m, t, kw: t.track_add_to_cart(
            "sku-9", 3, "Lamp " + UNICODE, "lights", 12.5, "EUR", **kw)),
        ("track_remove_from_cart", lambda m, t, kw: t.track_remove_from_cart(
            "sku-9", 1, "Lamp", "lights", 12.5, "EUR", **kw)),
        ("track_form_change", lambda m, t, kw: t.track_form_change(
            "form-1", "email", "INPUT", "a@b.c", type_="email",
            element_classes=["wide"], **kw)),
        ("track_form_submit", lambda m, t, kw: t.track_form_submit(
            "form-1", ["f-cls"],
            [{"name": "email", "value": "a@b.c", "nodeName": "INPUT", "type": "email"},
             {"name": "msg", "value": UNICODE, "nodeName": "TEXTAREA"}], **kw)),
        ("track_site_search", lambda m, t, kw: t.track_site_search(
            ["chair", UNICODE], {"colour": "red", "inStock": True}, 120, 10, **kw)),
        ("track_ecommerce_transaction", lambda m, t, kw: t.track_ecommerce_transaction(
            "order-1", 45.0, "aff", 4.5, 3.0, "Berlin", "BE", "DE", "EUR",
            items=_items(), context=_contexts(m), **kw)),
        ("track_ecommerce_transaction_item", lambda m, t, kw: t.track_ecommerce_transaction_item(
            "order-2", "sku-3", 7.5, 4, "Pen", "office", "GBP", **kw)),
        ("track_screen_view", lambda m, t, kw: t.track_screen_view(
            "Legacy " + UNICODE, SCREEN_ID, **kw)),
        ("track_mobile_screen_view", lambda m, t, kw: t.track_mobile_screen_view(
            "Mobile", SCREEN_ID, "feed", "Prev", PREVIOUS_ID, "list", "swipe",
            context=_contexts(m), **kw)),
        ("track_struct_event", lambda m, t, kw: t.track_struct_event(
            "cat", "act", "label", "prop", 7, **kw)),
        ("track_self_describing_event", lambda m, t, kw: t.track_self_describing_event(
            sdj(m, {"k": UNICODE}), context=_contexts(m), **kw)),
        ("track_unstruct_event", lambda m, t, kw: t.track_unstruct_event(
            sdj(m, {"k": 1}), **kw)),
    ]


#: events each call produces (the transaction sends tr + 2 ti)
EVENT_COUNT = len(_calls()) + 2


def _run_calls(m: ModuleType, tracker: Any, *, tstamp: int | None, event_subject: bool) -> None:
    kw = {"tstamp": tstamp, "event_subject": _event_subject(m) if event_subject else None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for _name, call in _calls():
            call(m, tracker, kw)


def _reference_events(c: Collector, b64: bool, tstamp: int | None,
                      event_subject: bool) -> list[dict[str, str]]:
    emitter = ref.Emitter(c.host, protocol="http", port=c.port, batch_size=1)
    tracker = ref.Tracker("cf", emitter, subject=_subject(ref), app_id="app-1",
                          encode_base64=b64)
    _run_calls(ref, tracker, tstamp=tstamp, event_subject=event_subject)
    tracker.flush()
    assert c.wait_for(EVENT_COUNT, 10)
    assert c.bad() == [], c.bad()[0].errors
    return accepted_events(c)


@pytest.fixture(scope="module")
def acme_schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Schemas for the com.acme entities and events used here (any object), so that the
    embedded collector judges every event good."""
    root = tmp_path_factory.mktemp("iglu")
    for name in ("user", "checkout", "text"):
        path = root / "com.acme" / name / "jsonschema" / "1-0-0"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"type": "object"}))
    return root


@pytest.fixture
def collectors(acme_schemas: Path) -> Iterator[tuple[Collector, Collector, Collector]]:
    with (Collector(schemas=[acme_schemas]) as a, Collector(schemas=[acme_schemas]) as b,
          Collector(schemas=[acme_schemas]) as g):
        yield a, b, g


@pytest.fixture
def collector(acme_schemas: Path) -> Iterator[Collector]:
    with ServerErrors() as errors:
        with Collector(schemas=[acme_schemas]) as c:
            yield c
        errors.check()


def _our_tracker(endpoint: str, method: str, b64: bool) -> ours.Tracker:
    emitter = ours.Emitter(endpoint, method=method)  # type: ignore[arg-type]
    return ours.Tracker("cf", emitter, subject=_subject(ours), app_id="app-1",
                        encode_base64=b64)


def _our_events(c: Collector, method: str, b64: bool, tstamp: int | None,
                event_subject: bool) -> tuple[list[dict[str, str]], int, int]:
    tracker = _our_tracker(c.endpoint, method, b64)
    try:
        before = time.time_ns() // 1_000_000
        _run_calls(ours, tracker, tstamp=tstamp, event_subject=event_subject)
        assert tracker.flush(timeout=10)
        assert c.wait_for(EVENT_COUNT, 10)
        after = time.time_ns() // 1_000_000
    finally:
        tracker.close(5)
    assert c.bad() == [], c.bad()[0].errors
    return accepted_events(c), before, after


def _decoded(ev: dict[str, str]) -> dict[str, Any]:
    return {
        "ue": decode_self_describing(ev, "ue_pr", "ue_px"),
        "co": decode_self_describing(ev, "co", "cx"),
    }


def _compare(ref_ev: dict[str, str], our_ev: dict[str, str], *, event_subject: bool,
             window: tuple[int, int], where: str) -> None:
    skip = set(IGNORED)
    if event_subject:
        skip.add("p")
    item_now = our_ev.get("e") == "ti" and ref_ev.get("ttm", str(TTM)) != str(TTM)
    if item_now:
        skip.add("ttm")
    ref_fields = {k: v for k, v in ref_ev.items() if k not in skip}
    our_fields = {k: v for k, v in our_ev.items() if k not in skip}
    assert our_fields.keys() == ref_fields.keys(), where
    for key, value in ref_fields.items():
        if key in JSON_FIELDS:
            continue
        assert our_fields[key] == value, f"{where}: field {key}"
    # JSON parts: the decoded JSON is equal, and so is the text as sent
    assert _decoded(our_ev) == _decoded(ref_ev), where
    for key in JSON_FIELDS:
        if key in ref_ev:
            assert our_ev[key] == ref_ev[key], f"{where}: {key} text"
    # intentional differences
    assert ref_ev["tv"] == "py-1.1.0"
    assert our_ev["tv"] == TRACKER_VERSION == f"py-threaded-{__version__}"
    if event_subject:
        assert ref_ev["p"] == "pc", "reference bug: an event subject resets the platform"
        assert our_ev["p"] == "srv", f"{where}: the tracker subject's platform is kept"
    else:
        assert our_ev["p"] == ref_ev["p"] == "srv"
    if item_now:
        assert window[0] <= int(our_ev["ttm"]) <= window[1], where


@pytest.mark.parametrize("b64", [True, False], ids=["b64", "plain"])
@pytest.mark.parametrize("tstamp", [None, TTM], ids=["no-ttm", "ttm"])
@pytest.mark.parametrize("event_subject", [False, True], ids=["tracker-subject", "event-subject"])
def test_same_events_as_reference(
    collectors: tuple[Collector, Collector, Collector], b64: bool, tstamp: int | None,
    event_subject: bool,
) -> None:
    c_ref, c_post, c_get = collectors
    expected = _reference_events(c_ref, b64, tstamp, event_subject)
    assert len(expected) == EVENT_COUNT
    for method, c in (("post", c_post), ("get", c_get)):
        got, before, after = _our_events(c, method, b64, tstamp, event_subject)
        assert len(got) == EVENT_COUNT, method
        names = [n for n, _ in _calls()]
        at = names.index("track_ecommerce_transaction") + 1
        names[at:at] = ["ti", "ti"]
        for i, (r, o) in enumerate(zip(expected, got, strict=True)):
            _compare(r, o, event_subject=event_subject, window=(before, after),
                     where=f"{method} event {i} ({names[i]})")
        for ev in got:
            validate_event(ev)
            if tstamp is not None:
                assert ev["ttm"] == str(tstamp)
            json_keys = {"ue_px", "cx"} if b64 else {"ue_pr", "co"}
            assert not (set(JSON_FIELDS) - json_keys) & ev.keys()


def test_reference_events_validate_too(collectors: tuple[Collector, Collector, Collector]) -> None:
    """The comparison is only meaningful if the reference's events are valid themselves."""
    c_ref, _, _ = collectors
    for ev in _reference_events(c_ref, True, TTM, False):
        validate_event(ev)


def test_event_subject_keeps_tracker_platform(collector: Collector) -> None:
    """Ours: an event subject overrides only what it sets. (The reference resets ``p`` to
    ``pc``; see test_same_events_as_reference for the reference side.)"""
    tracker = ours.Tracker("cf", ours.Emitter(collector.endpoint), subject=_subject(ours))
    try:
        tracker.track(ours.StructuredEvent("c", "a", event_subject=_event_subject(ours)))
        tracker.track(ours.StructuredEvent(
            "c", "a", event_subject=ours.Subject().set_platform("mob")))
        tracker.track(ours.StructuredEvent("c", "a"))
        assert tracker.flush(timeout=10)
        assert collector.wait_for(3, 10)
    finally:
        tracker.close(5)
    first, second, third = accepted_events(collector)
    assert (first["p"], first["uid"], first["ip"], first["lang"]) == (
        "srv", "event-user", "198.51.100.1", "fr")
    assert first["res"] == "1920x1080" and first["duid"] == "duid-1"  # rest from the tracker
    assert (second["p"], second["uid"]) == ("mob", "user-1")
    assert (third["p"], third["uid"], third["ip"]) == ("srv", "user-1", "203.0.113.7")


# -- the wire format itself -----------------------------------------------------------------


def _track_all(tracker: ours.Tracker, collector: Collector) -> tuple[int, int]:
    before = time.time_ns() // 1_000_000
    _run_calls(ours, tracker, tstamp=None, event_subject=False)
    assert tracker.flush(timeout=10)
    assert collector.wait_for(EVENT_COUNT, 10)
    return before, time.time_ns() // 1_000_000


@pytest.mark.parametrize("b64", [True, False], ids=["b64", "plain"])
def test_post_requests(collector: Collector, b64: bool) -> None:
    tracker = _our_tracker(collector.endpoint, "post", b64)
    try:
        before, after = _track_all(tracker, collector)
    finally:
        tracker.close(5)
    requests = collector.requests()
    assert requests
    events: list[dict[str, str]] = []
    for req in requests:
        assert req.method == "POST"
        assert req.path == POST_PATH
        assert req.headers["content-type"] == "application/json; charset=utf-8"
        assert req.status == 200
        body_events = validate_post_body(req.body)
        assert body_events == req.events
        events.extend(body_events)
    assert len(events) == EVENT_COUNT
    _check_events(events, before, after)


def test_get_requests(collector: Collector) -> None:
    tracker = _our_tracker(collector.endpoint, "get", True)
    try:
        before, after = _track_all(tracker, collector)
    finally:
        tracker.close(5)
    requests = collector.requests()
    assert len(requests) == EVENT_COUNT  # one event per request
    for req in requests:
        assert req.method == "GET"
        assert req.path == "/i"
        assert req.body == b""
        assert len(req.events) == 1
        assert req.events[0] == req.query
    _check_events([r.events[0] for r in requests], before, after)


def _check_events(events: list[dict[str, str]], before: int, after: int) -> None:
    for ev in events:
        validate_event(ev)
        assert all(isinstance(v, str) for v in ev.values())
        # stm and dtm in milliseconds (13 digits), inside the time window: not truncated
        for key in ("stm", "dtm"):
            assert len(ev[key]) == 13, (key, ev[key])
            assert before <= int(ev[key]) <= after, (key, ev[key], before, after)
        assert int(ev["dtm"]) <= int(ev["stm"])
    # truncation to seconds would make every stm end in 000. The events of one POST share
    # one stm, which ends in 000 by chance once in 1 000 runs: only several distinct ones
    # (GET: one per request) say anything here; test_sent_timestamp_is_milliseconds
    # checks the clock arithmetic with a fixed clock
    sent = {ev["stm"] for ev in events}
    if len(sent) >= 3:
        assert not all(stm.endswith("000") for stm in sent)
    assert len({ev["eid"] for ev in events}) == len(events)


def test_non_ascii_round_trip(collector: Collector) -> None:
    text = "naïve café — 東京 🚀 \u2028 \"quoted\" \\ end"
    sd = {"schema": "iglu:com.acme/text/jsonschema/1-0-0", "data": {"t": text}}
    tracker_b64 = _our_tracker(collector.endpoint, "post", True)
    tracker_plain = _our_tracker(collector.endpoint, "post", False)
    get_tracker = _our_tracker(collector.endpoint, "get", False)
    try:
        for t in (tracker_b64, tracker_plain, get_tracker):
            t.track(ours.SelfDescribing(ours.SelfDescribingJson(sd["schema"], sd["data"]),
                                        context=[ours.SelfDescribingJson(sd["schema"],
                                                                         {"t": text})]))
            t.track(ours.PageView("https://x.example/" + text, page_title=text))
            assert t.flush(timeout=10)
        assert collector.wait_for(6, 10)
    finally:
        for t in (tracker_b64, tracker_plain, get_tracker):
            t.close(5)
    b64_sd, b64_pv, plain_sd, plain_pv, get_sd, get_pv = accepted_events(collector)
    envelope = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
                "data": sd}
    # ue_px: URL-safe base64 of the UTF-8 JSON text
    raw = base64.urlsafe_b64decode(b64_sd["ue_px"])
    assert json.loads(raw.decode("utf-8")) == envelope
    plain_part = text.split(" \u2028")[0]
    assert plain_part.encode("utf-8") in raw  # UTF-8, not \u escapes
    assert unstruct_event(b64_sd) == sd
    assert context_entities(b64_sd) == [sd]
    # ue_pr: the UTF-8 JSON text itself
    for ev in (plain_sd, get_sd):
        assert plain_part in ev["ue_pr"]
        assert json.loads(ev["ue_pr"]) == envelope
        assert context_entities(ev) == [sd]
    for ev in (b64_pv, plain_pv, get_pv):
        assert ev["page"] == text
        assert ev["url"] == "https://x.example/" + text


def _one_event(endpoint: str, collector: Collector, **kwargs: Any) -> TrackerRequest:
    tracker = ours.Tracker("cf", ours.Emitter(endpoint, **kwargs))
    try:
        tracker.track(ours.StructuredEvent("c", "a"))
        assert tracker.flush(timeout=10)
        assert collector.wait_for(1, 10)
    finally:
        tracker.close(5)
    (req,) = collector.requests()
    return req


@pytest.mark.parametrize(
    ("form", "kwargs", "path"),
    [
        ("bare", {"protocol": "http"}, POST_PATH),
        ("bare+port-arg", {"protocol": "http"}, POST_PATH),
        ("url", {}, POST_PATH),
        ("url/", {}, POST_PATH),
        ("url/prefix", {}, "/custom/prefix" + POST_PATH),
        ("url/prefix/", {}, "/custom/prefix" + POST_PATH),
        ("url/prefix get", {"method": "get"}, "/custom/prefix/i"),
    ],
)
def test_endpoint_forms(collector: Collector, form: str, kwargs: dict[str, Any],
                        path: str) -> None:
    host, port = collector.host, collector.port
    endpoint = {
        "bare": f"{host}:{port}",
        "url": f"http://{host}:{port}",
        "url/": f"http://{host}:{port}/",
        "url/prefix": f"http://{host}:{port}/custom/prefix",
        "url/prefix/": f"http://{host}:{port}/custom/prefix/",
        "url/prefix get": f"http://{host}:{port}/custom/prefix",
    }.get(form, host)
    if form == "bare+port-arg":
        kwargs = {**kwargs, "port": port}
    req = _one_event(endpoint, collector, **kwargs)
    assert req.path == path
    assert req.status == 200
    assert req.events[0]["e"] == "se"
    emitter = ours.Emitter(endpoint, **kwargs)
    try:
        assert emitter.endpoint == f"http://{host}:{port}{path}"
    finally:
        emitter.close(1)


def test_reference_and_ours_build_the_same_collector_uri() -> None:
    for args in (("collector.example.com",), ("collector.example.com", "http", 8080),
                 ("collector.example.com", "https", None, "get")):
        assert ours.Emitter.as_collector_uri(*args) == ref.Emitter.as_collector_uri(*args)
