"""The public API, as the Snowplow Python tracker documents it (``snowplow-tracker`` 1.1.0),
and the call-site checks this package adds. Everything sends to a real local collector."""

from __future__ import annotations

import copy
import datetime
import json
import re
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

import snowplow_threaded as sp
from snowplow_threaded import (
    AsyncEmitter,
    DuplicateNamespaceError,
    Emitter,
    EmitterConfiguration,
    PagePing,
    PageView,
    ScreenView,
    SelfDescribing,
    SelfDescribingJson,
    Snowplow,
    StructuredEvent,
    Subject,
    Tracker,
    TrackerConfiguration,
)
from snowplow_threaded.collector import Collector
from snowplow_threaded.process import REGISTRY
from stress.crew import Crew
from tests.helpers import accepted_events
from tests.schemas import unstruct_event, validate_event

POST_PATH = "/com.snowplowanalytics.snowplow/tp2"
SCHEMA = "iglu:com.acme/thing/jsonschema/1-0-0"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    Snowplow.reset()
    yield
    Snowplow.shutdown(2)
    Snowplow.reset()


@pytest.fixture
def closing() -> Iterator[Callable[[Any], Any]]:
    """Register trackers/emitters made in a test; they are closed at its end."""
    made: list[Any] = []

    def keep(obj: Any) -> Any:
        made.append(obj)
        return obj

    yield keep
    for obj in made:
        obj.close(2)


def _deliver(tracker: Tracker, collector: Collector, n: int,
             dropped: bool = False) -> list[dict[str, str]]:
    assert tracker.flush(timeout=10) is not dropped
    assert collector.wait_for(n, 10)
    events = accepted_events(collector)
    assert len(events) == n
    return events


def _live_ids() -> set[int]:
    return {id(obj) for obj in REGISTRY.live()}


# -- Snowplow registry --------------------------------------------------------------------


def test_create_get_remove_reset(collector: Collector) -> None:
    tracker = Snowplow.create_tracker(namespace="ns", endpoint=collector.endpoint)
    assert isinstance(tracker, Tracker)
    assert Snowplow.get_tracker("ns") is tracker
    assert tracker.get_namespace() == "ns"
    eid = tracker.track(StructuredEvent("c", "a"))
    (ev,) = _deliver(tracker, collector, 1)
    assert ev["eid"] == eid and ev["tna"] == "ns"
    assert collector.requests()[0].path == POST_PATH

    Snowplow.remove_tracker(tracker)
    assert Snowplow.get_tracker("ns") is None
    assert Snowplow.add_tracker(tracker) is tracker
    assert Snowplow.get_tracker("ns") is tracker
    Snowplow.remove_tracker_by_namespace("ns")
    assert Snowplow.get_tracker("ns") is None
    Snowplow.remove_tracker_by_namespace("ns")  # absent: no error

    other = Snowplow.create_tracker("other", collector.endpoint)
    Snowplow.add_tracker(tracker)
    Snowplow.reset()
    assert Snowplow.get_tracker("ns") is None and Snowplow.get_tracker("other") is None
    assert Snowplow.get_tracker("missing") is None
    tracker.close(2)
    other.close(2)


def test_duplicate_namespace(collector: Collector) -> None:
    first = Snowplow.create_tracker("dup", collector.endpoint)
    before = _live_ids()
    with pytest.raises(DuplicateNamespaceError) as info:
        Snowplow.create_tracker("dup", collector.endpoint,
                                emitter_config=EmitterConfiguration(batch_size=3))
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert "dup" in str(info.value)
    assert _live_ids() <= before  # no emitter was built
    assert Snowplow.get_tracker("dup") is first
    with pytest.raises(TypeError):  # how reference-era code catches it
        Snowplow.create_tracker("dup", collector.endpoint)
    with pytest.raises(ValueError):
        Snowplow.add_tracker(Tracker("dup", Emitter(collector.endpoint)))
    assert Snowplow.get_tracker("dup") is first


def test_bad_namespace_builds_nothing(collector: Collector) -> None:
    before = _live_ids()
    for bad in ("", None, 5):
        with pytest.raises(ValueError, match="namespace"):
            Snowplow.create_tracker(bad, collector.endpoint)  # type: ignore[arg-type]
    assert _live_ids() <= before


def test_concurrent_duplicate_namespace(collector: Collector) -> None:
    results: list[object] = []

    def create(_: int) -> None:
        try:
            results.append(Snowplow.create_tracker("race", collector.endpoint))
        except DuplicateNamespaceError as exc:
            results.append(exc)

    Crew(create, 8, timeout=10).run()
    winners = [r for r in results if isinstance(r, Tracker)]
    assert len(results) == 8 and len(winners) == 1
    assert Snowplow.get_tracker("race") is winners[0]


def _full_config(session: requests.Session, store: sp.InMemoryEventStore,
                 on_success: Callable[..., Any], on_failure: Callable[..., Any]
                 ) -> EmitterConfiguration:
    return EmitterConfiguration(
        batch_size=7, on_success=on_success, on_failure=on_failure, byte_limit=50_000,
        request_timeout=(2.0, 3.0), buffer_capacity=123, custom_retry_codes={500: False},
        event_store=store, session=session, max_retry_delay_seconds=9.0, thread_count=3,
        flush_interval=0.25, flush_timeout=4.0, shutdown_timeout=3.0,
        when_full="drop_oldest", max_events_per_request=40, max_request_bytes=60_000,
        max_retries=2, buffer_max_bytes=1_000_000, block_timeout=0.5, on_drop=print,
    )


def test_create_tracker_honours_every_emitter_field(collector: Collector) -> None:
    session = requests.Session()
    session.headers["X-Config-Session"] = "yes"
    store = sp.InMemoryEventStore(buffer_capacity=55)
    successes: list[int] = []
    config = _full_config(session, store, lambda sent: successes.append(len(sent)),
                          lambda n, failed: None)
    tracker = Snowplow.create_tracker("cfg", collector.endpoint, emitter_config=config)
    (emitter,) = tracker.emitters
    assert isinstance(emitter, Emitter)
    assert emitter.batch_size == 7
    assert emitter.on_success is config.on_success and emitter.on_failure is config.on_failure
    assert emitter.byte_limit == 50_000
    assert emitter.request_timeout == (2.0, 3.0)
    assert emitter.custom_retry_codes == {500: False}
    assert emitter.event_store is store  # a given store wins over buffer_capacity
    assert emitter.session is session
    assert emitter.max_retry_delay_seconds == 9.0
    assert emitter.thread_count == 3
    assert emitter.flush_timeout == 4.0 and emitter.shutdown_timeout == 3.0
    dispatcher = emitter._dispatcher
    assert dispatcher.trigger.flush_interval == 0.25
    assert dispatcher.trigger.max_events_per_request == 40
    assert dispatcher.settings.max_retries == 2
    assert dispatcher.settings.custom_retry_codes == {500: False}
    # behaviour: the user's session is used, by 3 worker threads
    for i in range(3):
        tracker.track(StructuredEvent("c", f"a{i}"))
    _deliver(tracker, collector, 3)
    assert all(r.headers.get("x-config-session") == "yes" for r in collector.requests())
    names = [t.name for t in threading.enumerate() if emitter.endpoint in t.name]
    assert len(names) == 3
    assert sum(successes) == 3


def test_create_tracker_buffer_capacity_and_when_full(collector: Collector) -> None:
    """The reference's create_tracker drops buffer_capacity; ours bounds the buffer."""
    collector.faults(delay=0.3)
    tracker = Snowplow.create_tracker(
        "cap", collector.endpoint,
        emitter_config=EmitterConfiguration(buffer_capacity=3, batch_size=100,
                                            flush_interval=30))
    (emitter,) = tracker.emitters
    assert isinstance(emitter, Emitter)
    assert isinstance(emitter.event_store, sp.InMemoryEventStore)
    assert emitter.event_store.buffer_capacity == 3
    assert emitter.event_store.when_full == "drop_newest"
    for i in range(10):
        tracker.track(StructuredEvent("c", "a", value=i))
    stats = tracker.stats()
    assert stats.tracked == 3
    assert stats.dropped == {"buffer_full": 7}
    events = _deliver(tracker, collector, 3, dropped=True)
    assert [e["se_va"] for e in events] == ["0", "1", "2"]

    oldest = Snowplow.create_tracker(
        "old", collector.endpoint,
        emitter_config=EmitterConfiguration(buffer_capacity=2, when_full="drop_oldest",
                                            flush_interval=30, batch_size=100,
                                            buffer_max_bytes=4096))
    (emitter,) = oldest.emitters
    assert isinstance(emitter, Emitter)
    assert isinstance(emitter.event_store, sp.InMemoryEventStore)
    assert emitter.event_store.when_full == "drop_oldest"
    assert emitter.event_store.max_bytes == 4096
    # the deprecated name still works, and says so
    with pytest.warns(DeprecationWarning, match="when_full"):
        legacy = Snowplow.create_tracker(
            "legacy", collector.endpoint,
            emitter_config=EmitterConfiguration(drop_policy="drop_oldest"))
    (emitter,) = legacy.emitters
    assert isinstance(emitter, Emitter)
    assert isinstance(emitter.event_store, sp.InMemoryEventStore)
    assert emitter.event_store.when_full == "drop_oldest"
    with pytest.raises(ValueError, match="disagree"):
        Emitter(collector.endpoint, when_full="block", drop_policy="drop_oldest")


def test_create_tracker_max_events_per_request_and_bytes(collector: Collector) -> None:
    tracker = Snowplow.create_tracker(
        "req", collector.endpoint,
        emitter_config=EmitterConfiguration(batch_size=3, flush_interval=30,
                                            max_events_per_request=4))
    collector.faults(delay=0.05)  # a backlog builds up behind the first request
    for _ in range(20):
        tracker.track(StructuredEvent("c", "a"))
    _deliver(tracker, collector, 20)
    sizes = [len(r.events) for r in collector.requests()]
    assert max(sizes) == 4 and sum(sizes) == 20
    collector.faults(200)

    collector.reset()
    small = Snowplow.create_tracker(
        "bytes", collector.endpoint,
        emitter_config=EmitterConfiguration(batch_size=1000, flush_interval=30,
                                            max_request_bytes=1500))
    for _ in range(10):
        small.track(StructuredEvent("c", "a", label="x" * 100))
    _deliver(small, collector, 10)
    assert len(collector.requests()) > 1
    assert all(len(r.body) <= 1500 for r in collector.requests())


def test_create_tracker_flush_interval(collector: Collector) -> None:
    tracker = Snowplow.create_tracker(
        "fi", collector.endpoint,
        emitter_config=EmitterConfiguration(batch_size=100, flush_interval=0.1))
    tracker.track(StructuredEvent("c", "a"))
    assert collector.wait_for(1, 3)  # sent without flush(), by the interval


def test_create_tracker_retry_fields(collector: Collector) -> None:
    failures: list[int] = []
    collector.faults(503)
    tracker = Snowplow.create_tracker(
        "retry", collector.endpoint,
        emitter_config=EmitterConfiguration(
            batch_size=1, max_retries=1, max_retry_delay_seconds=0.05,
            on_failure=lambda n, failed: failures.append(len(failed))))
    tracker.track(StructuredEvent("c", "a"))
    tracker.flush(timeout=5)
    stats = tracker.stats()
    assert stats.failed == 1 and stats.retried == 1
    assert len(collector.requests()) == 2
    assert failures == [1, 1]

    collector.reset()
    no_retry = Snowplow.create_tracker(
        "noretry", collector.endpoint,
        emitter_config=EmitterConfiguration(batch_size=1, custom_retry_codes={503: False}))
    no_retry.track(StructuredEvent("c", "a"))
    assert no_retry.flush(timeout=5) is False  # settled, failed for good
    assert no_retry.stats().failed == 1 and no_retry.stats().retried == 0
    assert len(collector.requests()) == 1


@pytest.mark.parametrize("order", ["reference", "documented"])
def test_create_tracker_positional_orders(collector: Collector, order: str) -> None:
    subject = Subject().set_platform("srv").set_user_id("u")
    tcfg = TrackerConfiguration(encode_base64=False)
    ecfg = EmitterConfiguration(batch_size=4)
    if order == "reference":  # snowplow-tracker 1.1.0's signature
        tracker = Snowplow.create_tracker("pos", collector.endpoint, "post", "app", subject,
                                          tcfg, ecfg)
    else:  # the order of the Snowplow docs
        tracker = Snowplow.create_tracker("pos", collector.endpoint, "post", ecfg, "app",
                                          subject, tcfg)
    assert tracker.subject is subject
    assert tracker.standard_nv_pairs["aid"] == "app"
    assert tracker.encode_base64 is False
    (emitter,) = tracker.emitters
    assert isinstance(emitter, Emitter) and emitter.batch_size == 4
    tracker.track(SelfDescribing(SelfDescribingJson(SCHEMA, {"x": 1})))
    (ev,) = _deliver(tracker, collector, 1)
    assert (ev["aid"], ev["p"], ev["uid"]) == ("app", "srv", "u")
    assert "ue_pr" in ev and "ue_px" not in ev


def test_create_tracker_get_method(collector: Collector) -> None:
    tracker = Snowplow.create_tracker("get", collector.endpoint, method="get")
    tracker.track(PageView("https://x/"))
    _deliver(tracker, collector, 1)
    assert collector.requests()[0].method == "GET" and collector.requests()[0].path == "/i"


# -- Tracker and emitters ---------------------------------------------------------------------


def test_tracker_forms(collector: Collector, closing: Callable[[Any], Any]) -> None:
    e = Emitter(collector.endpoint)
    t = closing(Tracker("snowplow_tracker", emitters=e))
    assert t.emitters == [e]
    assert isinstance(t.subject, Subject)
    t.track(PageView("https://x/"))
    (ev,) = _deliver(t, collector, 1)
    assert ev["p"] == "pc" and ev["tna"] == "snowplow_tracker" and "aid" not in ev


def test_tracker_keyword_form_with_json_encoder(collector: Collector,
                                                closing: Callable[[Any], Any]) -> None:
    def encoder(value: object) -> str:
        assert isinstance(value, datetime.datetime)
        return value.isoformat()

    subject = Subject().set_platform("srv")
    e = Emitter(collector.endpoint)
    t = closing(Tracker(namespace="cf", emitter=e, subject=subject, app_id="my-app",
                        encode_base64=False, json_encoder=encoder))
    when = datetime.datetime(2024, 1, 2, 3, 4, 5)
    t.track(SelfDescribing(SelfDescribingJson(SCHEMA, {"at": when}),
                           context=[SelfDescribingJson(SCHEMA, {"at": when})]))
    (ev,) = _deliver(t, collector, 1)
    assert (ev["tna"], ev["aid"], ev["p"]) == ("cf", "my-app", "srv")
    assert json.loads(ev["ue_pr"])["data"] == {"schema": SCHEMA,
                                                "data": {"at": "2024-01-02T03:04:05"}}
    assert json.loads(ev["co"])["data"] == [{"schema": SCHEMA,
                                             "data": {"at": "2024-01-02T03:04:05"}}]


def test_tracker_list_of_emitters(closing: Callable[[Any], Any]) -> None:
    with Collector() as a, Collector() as b:
        t = closing(Tracker("multi", [Emitter(a.endpoint), Emitter(b.endpoint, method="get")]))
        eids = [t.track(StructuredEvent("c", f"a{i}")) for i in range(3)]
        assert t.flush(timeout=10)
        assert a.wait_for(3, 10) and b.wait_for(3, 10)
        assert [e["eid"] for e in accepted_events(a)] == eids == [
            e["eid"] for e in accepted_events(b)]
        assert t.stats().sent == 6


def test_tracker_rejects_bad_arguments(collector: Collector) -> None:
    e = Emitter(collector.endpoint)
    with pytest.raises(TypeError):
        Tracker("ns")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Tracker("", e)
    with pytest.raises(ValueError):
        Tracker("ns", [])
    with pytest.raises(TypeError):
        Tracker("ns", e, encode_base64="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Tracker("ns", e, json_encoder=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Tracker("ns", e).track({"e": "pv"})  # type: ignore[arg-type]
    e.close(1)


def test_emitter_endpoint_forms() -> None:
    e1 = Emitter(endpoint="mycollector.com")
    e2 = Emitter(endpoint="mycollector.com", port=8080)
    e3 = Emitter(endpoint="mycollector.com", method="get")
    try:
        assert e1.endpoint == "https://mycollector.com" + POST_PATH
        assert e2.endpoint == "https://mycollector.com:8080" + POST_PATH
        assert e3.endpoint == "https://mycollector.com/i"
        assert e1.batch_size == 10 and e3.batch_size == 1
        # no thread is started before the first event
        assert not [t for t in threading.enumerate() if "mycollector.com" in t.name]
    finally:
        for e in (e1, e2, e3):
            assert e.close(1)


def test_async_emitter_reference_positional_order(collector: Collector,
                                                  closing: Callable[[Any], Any]) -> None:
    sent: list[int] = []
    session = requests.Session()
    on_success = lambda events: sent.append(len(events))  # noqa: E731
    on_failure = lambda n, events: None  # noqa: E731
    # endpoint, protocol, port, method, batch_size, on_success, on_failure, thread_count,
    # byte_limit, request_timeout, max_retry_delay_seconds, buffer_capacity,
    # custom_retry_codes, event_store, session
    e = AsyncEmitter(collector.host, "http", collector.port, "post", 2, on_success, on_failure,
                     2, 10_000, 4.0, 30, 50, {503: False}, None, session)
    assert e.endpoint == collector.endpoint + POST_PATH
    assert (e.batch_size, e.thread_count, e.byte_limit, e.request_timeout) == (2, 2, 10_000, 4.0)
    assert (e.on_success, e.on_failure, e.session) == (on_success, on_failure, session)
    assert e.max_retry_delay_seconds == 30 and e.custom_retry_codes == {503: False}
    assert isinstance(e.event_store, sp.InMemoryEventStore)
    assert e.event_store.buffer_capacity == 50
    t = closing(Tracker("async", e))
    for _ in range(4):
        t.track(StructuredEvent("c", "a"))
    _deliver(t, collector, 4)
    assert sum(sent) == 4
    # AsyncEmitter defaults to http for a bare host, Emitter to https
    a = AsyncEmitter("h.example")
    assert a.endpoint.startswith("http://")
    a.close(1)


def test_async_emitter_keywords_and_sync_flush(collector: Collector,
                                               closing: Callable[[Any], Any]) -> None:
    e = AsyncEmitter(endpoint=collector.host, port=collector.port, thread_count=2,
                     batch_size=1, method="get")
    t = closing(Tracker("kw", emitters=e))
    t.track(PageView("https://x/"))
    assert e.sync_flush() is True
    assert collector.wait_for(1, 10)


# -- configurations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0), ("batch_size", "10"), ("batch_size", True),
        ("on_success", 1), ("on_failure", "f"),
        ("byte_limit", -1), ("request_timeout", -1.0), ("request_timeout", (1.0, 2.0, 3.0)),
        ("buffer_capacity", 0), ("custom_retry_codes", {200: True}),
        ("custom_retry_codes", {"500": True}), ("custom_retry_codes", {500: "yes"}),
        ("custom_retry_codes", [500]), ("event_store", object()), ("session", object()),
        ("max_retry_delay_seconds", 0), ("thread_count", 0), ("thread_count", 1.5),
        ("flush_interval", 0), ("flush_timeout", -1), ("shutdown_timeout", -1),
        ("drop_policy", "random"), ("max_events_per_request", 0),
        ("when_full", "drop_all"), ("buffer_max_bytes", 0), ("block_timeout", -1),
        ("on_drop", "log"),
        ("max_request_bytes", 0), ("max_retries", -1),
    ],
)
def test_emitter_configuration_rejects(field: str, value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as info:
        EmitterConfiguration(**{field: value})
    assert field in str(info.value)
    config = EmitterConfiguration()
    with pytest.raises((TypeError, ValueError)) as info:
        setattr(config, field, value)
    assert field in str(info.value)
    with pytest.raises((TypeError, ValueError)) as info:
        Emitter("collector.example.com", **{field: value})
    assert field in str(info.value)


def test_emitter_configuration_retry_codes() -> None:
    a, b = EmitterConfiguration(), EmitterConfiguration()
    assert a.custom_retry_codes == {} and a.custom_retry_codes is not b.custom_retry_codes
    assert a.set_retry_code(500, False) is True
    assert a.set_retry_code(403) is True
    assert a.custom_retry_codes == {500: False, 403: True}
    assert b.custom_retry_codes == {}
    for bad in ((200,), (299, False), ("500",), (99,), (600,), (500, "yes"), (True,)):
        with pytest.raises((TypeError, ValueError)):
            a.set_retry_code(*bad)  # type: ignore[arg-type]
    assert a.custom_retry_codes == {500: False, 403: True}
    given = {429: True}
    c = EmitterConfiguration(custom_retry_codes=given)
    c.set_retry_code(500)
    assert given == {429: True}  # the caller's dict is not modified


def test_tracker_configuration() -> None:
    default = TrackerConfiguration()
    assert default.encode_base64 is True and default.json_encoder is None
    custom = TrackerConfiguration(encode_base64=False, json_encoder=str)
    assert custom.encode_base64 is False and custom.json_encoder is str
    with pytest.raises(TypeError, match="encode_base64"):
        TrackerConfiguration(encode_base64="false")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="json_encoder"):
        TrackerConfiguration(json_encoder="str")  # type: ignore[arg-type]


# -- track() ------------------------------------------------------------------------------------


def test_track_returns_the_eid_and_does_not_mutate(collector: Collector,
                                                    closing: Callable[[Any], Any]) -> None:
    t = closing(Tracker("t", Emitter(collector.endpoint), subject=Subject().set_user_id("u")))
    event = SelfDescribing(SelfDescribingJson(SCHEMA, {"n": [1, 2]}),
                           event_subject=Subject().set_ip_address("1.2.3.4"),
                           context=[SelfDescribingJson(SCHEMA, {"c": 1})],
                           true_timestamp=1_700_000_000_000)
    before_payload = copy.deepcopy(event.payload.nv_pairs)
    before_context = [c.to_json() for c in event.context]
    eid1 = t.track(event)
    eid2 = t.track(event)
    assert UUID_RE.match(eid1) and UUID_RE.match(eid2) and eid1 != eid2
    assert event.payload.nv_pairs == before_payload
    assert [c.to_json() for c in event.context] == before_context
    assert event.event_subject is not None
    assert event.event_subject.explicit_nv_pairs == {"ip": "1.2.3.4"}
    first, second = _deliver(t, collector, 2)
    assert (first["eid"], second["eid"]) == (eid1, eid2)
    strip = {"eid", "dtm", "stm"}
    assert {k: v for k, v in first.items() if k not in strip} == {
        k: v for k, v in second.items() if k not in strip}
    assert first["ttm"] == "1700000000000" and first["ip"] == "1.2.3.4"
    assert first["uid"] == "u"


def test_legacy_ecommerce_does_not_mutate_items(collector: Collector,
                                                closing: Callable[[Any], Any]) -> None:
    t = closing(Tracker("t", Emitter(collector.endpoint)))
    items = [{"sku": "s1", "price": 2.5, "quantity": 2}, {"sku": "s2", "price": 1, "quantity": 1}]
    snapshot = copy.deepcopy(items)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        t.track_ecommerce_transaction("o1", 6, items=items, currency="EUR")
        t.track_ecommerce_transaction("o2", 6, items=items)
    assert items == snapshot
    events = _deliver(t, collector, 6)
    assert [e["e"] for e in events] == ["tr", "ti", "ti"] * 2
    assert events[1]["ti_cu"] == "EUR" and "ti_cu" not in events[4]
    assert events[4]["ti_id"] == "o2"


LEGACY_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("track_page_view", ("https://x/",)),
    ("track_page_ping", ("https://x/",)),
    ("track_link_click", ("https://x/",)),
    ("track_add_to_cart", ("sku", 1)),
    ("track_remove_from_cart", ("sku", 1)),
    ("track_form_change", ("form", "el", "INPUT", "v")),
    ("track_form_submit", ("form",)),
    ("track_site_search", (["term"],)),
    ("track_ecommerce_transaction", ("o", 1.0)),
    ("track_ecommerce_transaction_item", ("o", "sku", 1.0, 1)),
    ("track_screen_view", ("name",)),
    ("track_mobile_screen_view", ("name",)),
    ("track_struct_event", ("c", "a")),
    ("track_self_describing_event", (SelfDescribingJson(SCHEMA, {}),)),
    ("track_unstruct_event", (SelfDescribingJson(SCHEMA, {}),)),
]


@pytest.mark.parametrize(("name", "args"), LEGACY_CALLS, ids=[c[0] for c in LEGACY_CALLS])
def test_legacy_methods_warn_and_return_tracker(collector: Collector, name: str,
                                                args: tuple[Any, ...]) -> None:
    t = Tracker("legacy", Emitter(collector.endpoint))
    try:
        with pytest.warns(DeprecationWarning) as record:
            result = getattr(t, name)(*args)
        assert result is t
        assert record[0].filename == __file__  # points at the caller
        assert name in str(record[0].message)
        (ev,) = _deliver(t, collector, 1)
        validate_event(ev)
    finally:
        t.close(2)


# -- bad input at the call site ---------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["", "ftp://collector.example.com", " collector.example.com", "collector .example.com",
     "collector.example.com\r\nX-Injected: 1", "collector.example.com\n",
     "http://user:pw@collector.example.com", "http://user@collector.example.com",
     "http://collector.example.com?x=1", "http://collector.example.com/#frag",
     "collector.example.com:0", "collector.example.com:70000", "http://", "://x"],
)
def test_bad_endpoints(endpoint: str) -> None:
    with pytest.raises(ValueError):
        Emitter(endpoint)
    with pytest.raises(ValueError):
        Snowplow.create_tracker("bad", endpoint)
    assert Snowplow.get_tracker("bad") is None


@pytest.mark.parametrize("port", [0, 70000, -1])
def test_bad_ports(port: int) -> None:
    with pytest.raises(ValueError):
        Emitter("collector.example.com", port=port)


@pytest.mark.parametrize(
    "schema",
    ["", "com.acme/x/jsonschema/1-0-0", "iglu:com.acme/x/jsonschema/1-0",
     "iglu:com.acme/x/jsonschema/1-0-0 ", "iglu:com.acme/x/1-0-0", "iglu:/x/jsonschema/1-0-0"],
)
def test_bad_schema_uri(schema: str) -> None:
    with pytest.raises(ValueError):
        SelfDescribingJson(schema, {})
    good = SelfDescribingJson(SCHEMA, {})
    with pytest.raises(ValueError):
        good.schema = schema


@pytest.mark.parametrize(
    "make",
    [
        lambda: SelfDescribing(SelfDescribingJson(SCHEMA, {"when": datetime.date(2024, 1, 1)})),
        lambda: PageView("https://x/", context=[SelfDescribingJson(SCHEMA, {"s": {1, 2}})]),
        lambda: ScreenView("5e0a1b8c-3f5d-4c7e-9a2b-1c2d3e4f5a6b", "n",
                           context=[SelfDescribingJson(SCHEMA, {"o": object()})]),
    ],
    ids=["ue-date", "context-set", "screen-context-object"],
)
def test_unserialisable_data_raises_and_enqueues_nothing(
    collector: Collector, closing: Callable[[Any], Any], make: Callable[[], Any]
) -> None:
    t = closing(Tracker("t", Emitter(collector.endpoint)))
    with pytest.raises(TypeError, match="json_encoder"):
        t.track(make())
    stats = t.stats()
    assert stats.tracked == 0 and stats.queued == 0
    assert t.flush(timeout=2)
    assert collector.requests() == []


def test_nan_raises(collector: Collector, closing: Callable[[Any], Any]) -> None:
    t = closing(Tracker("t", Emitter(collector.endpoint), json_encoder=str))
    nan = float("nan")
    with pytest.raises(ValueError):
        t.track(SelfDescribing(SelfDescribingJson(SCHEMA, {"x": nan})))
    with pytest.raises(ValueError):
        t.track(PageView("https://x/", context=[SelfDescribingJson(SCHEMA, {"x": [nan]})]))
    with pytest.raises(ValueError):
        t.track(SelfDescribing(SelfDescribingJson(SCHEMA, {"x": float("inf")})))
    with pytest.raises(ValueError):
        StructuredEvent("c", "a", value=nan)
    with pytest.raises(ValueError):
        StructuredEvent("c", "a", value=float("-inf"))
    with pytest.raises(ValueError):
        PageView("https://x/", true_timestamp=nan)
    with pytest.raises(ValueError):
        PagePing("https://x/", max_y=nan)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError):
            t.track_ecommerce_transaction("o", nan)
        with pytest.raises(ValueError):
            t.track_ecommerce_transaction_item("o", "s", nan, 1)
        with pytest.raises(ValueError):
            t.track_add_to_cart("s", 1, unit_price=nan)
    assert t.stats().tracked == 0


def test_json_encoder_from_tracker_configuration(collector: Collector) -> None:
    t = Snowplow.create_tracker(
        "enc", collector.endpoint,
        tracker_config=TrackerConfiguration(json_encoder=lambda o: o.isoformat()))
    t.track(SelfDescribing(SelfDescribingJson(SCHEMA, {"d": datetime.date(2024, 5, 6)})))
    (ev,) = _deliver(t, collector, 1)
    assert unstruct_event(ev) == {"schema": SCHEMA, "data": {"d": "2024-05-06"}}


@pytest.mark.parametrize(
    "context",
    [{"schema": SCHEMA, "data": {}}, SelfDescribingJson(SCHEMA, {}),
     [{"schema": SCHEMA, "data": {}}], "context", [SelfDescribingJson(SCHEMA, {}), None]],
    ids=["dict", "bare-sdj", "list-of-dict", "str", "list-with-none"],
)
def test_context_must_be_list_of_self_describing_json(collector: Collector, context: Any) -> None:
    with pytest.raises(TypeError, match="context"):
        PageView("https://x/", context=context)
    with pytest.raises(TypeError, match="context"):
        StructuredEvent("c", "a", context=context)
    t = Tracker("t", Emitter(collector.endpoint))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with pytest.raises(TypeError, match="context"):
                t.track_struct_event("c", "a", context=context)
        assert t.stats().tracked == 0
    finally:
        t.close(1)


def test_required_event_fields() -> None:
    for make in (lambda: PageView(""), lambda: StructuredEvent("", "a"),
                 lambda: StructuredEvent("c", ""), lambda: ScreenView("", "n"),
                 lambda: ScreenView("id", "")):
        with pytest.raises(ValueError):
            make()
    with pytest.raises(TypeError):
        SelfDescribing({"schema": SCHEMA, "data": {}})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PageView("https://x/", event_subject="u")  # type: ignore[arg-type]


def test_numeric_user_id_is_sent_as_text() -> None:
    # code written for the reference often passes a numeric user id: keep it working
    assert Subject().set_user_id(42).explicit_nv_pairs == {"uid": "42"}


@pytest.mark.parametrize(
    ("setter", "args", "exc"),
    [
        ("set_platform", ("desktop",), ValueError),
        ("set_screen_resolution", (0, 600), ValueError),
        ("set_screen_resolution", (800, -1), ValueError),
        ("set_screen_resolution", ("800", 600), TypeError),
        ("set_viewport", (800, 0), ValueError),
        ("set_viewport", (1.5, 600), TypeError),
        ("set_color_depth", ("24",), TypeError),
        ("set_color_depth", (0,), ValueError),
        ("set_domain_session_index", ("3",), TypeError),
        ("set_domain_session_index", (0,), ValueError),
        ("set_user_id", ([42],), TypeError),
        ("set_timezone", (1.5,), TypeError),
        ("set_lang", (b"en",), TypeError),
        ("set_domain_user_id", ({},), TypeError),
        ("set_domain_session_id", (True,), TypeError),
        ("set_ip_address", (1.0,), TypeError),
        ("set_useragent", (object(),), TypeError),
        ("set_network_user_id", ((1,),), TypeError),
    ],
)
def test_subject_setter_validation(setter: str, args: tuple[Any, ...],
                                   exc: type[Exception]) -> None:
    subject = Subject().set_user_id("kept")
    with pytest.raises(exc):
        getattr(subject, setter)(*args)
    assert subject.explicit_nv_pairs == {"uid": "kept"}


def test_subject_setters_chain_and_send(collector: Collector,
                                        closing: Callable[[Any], Any]) -> None:
    s = (Subject().set_platform("mob").set_user_id("u").set_screen_resolution(1, 2)
         .set_viewport(3, 4).set_color_depth(8).set_timezone("UTC").set_lang("en")
         .set_domain_user_id("d").set_domain_session_id("sid").set_domain_session_index(2)
         .set_ip_address("10.0.0.1").set_useragent("ua").set_network_user_id("n"))
    t = closing(Tracker("t", Emitter(collector.endpoint), subject=s))
    t.track(PageView("https://x/"))
    (ev,) = _deliver(t, collector, 1)
    expected = {"p": "mob", "uid": "u", "res": "1x2", "vp": "3x4", "cd": "8", "tz": "UTC",
                "lang": "en", "duid": "d", "sid": "sid", "vid": "2", "ip": "10.0.0.1",
                "ua": "ua", "tnuid": "n"}
    assert {k: ev[k] for k in expected} == expected
    s.set_user_id(None)  # type: ignore[arg-type]  # None unsets, as in the reference
    t.track(PageView("https://x/"))
    assert t.flush(timeout=10) and collector.wait_for(2, 10)
    assert "uid" not in accepted_events(collector)[1]


# -- logging ----------------------------------------------------------------------------------


def test_logging_is_silent_by_default() -> None:
    code = r"""
import logging, sys
import snowplow_threaded as sp
pkg = logging.getLogger("snowplow_threaded")
assert any(isinstance(h, logging.NullHandler) for h in pkg.handlers), pkg.handlers
assert logging.getLogger().handlers == [], logging.getLogger().handlers
# collector faults (connection refused) must not print anything either
t = sp.Tracker("quiet", sp.Emitter("http://127.0.0.1:9", max_retries=0))
t.track(sp.StructuredEvent("c", "a"))
t.flush(timeout=2)
assert t.stats().failed == 1, t.stats()
t.close(1)
assert logging.getLogger().handlers == []
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=15)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""


def test_subject_copy_and_merged_leave_the_originals_alone() -> None:
    base = Subject().set_platform("srv").set_user_id("u1")
    over = Subject().set_user_id("u2").set_lang("fr")
    clone = base.copy()
    clone.set_user_id("changed")
    merged = base.merged(over)
    assert base.explicit_nv_pairs == {"p": "srv", "uid": "u1"}
    assert merged.explicit_nv_pairs == {"p": "srv", "uid": "u2", "lang": "fr"}
    assert base.merged(None).explicit_nv_pairs == base.explicit_nv_pairs
