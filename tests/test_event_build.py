"""How track() builds an event on the caller's thread: event ids, the cached subject
fields, values that are not strings, and the request the default transport writes.
Everything sends to a real local collector."""

from __future__ import annotations

import base64
import enum
import json
import os
import uuid

import pytest

import snowplow_threaded.tracker as tracker_module
from snowplow_threaded import (
    Emitter,
    Event,
    PagePing,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
    Tracker,
)
from snowplow_threaded.collector import Collector
from snowplow_threaded.payload import Payload, PayloadPairs
from snowplow_threaded.record import payload_of
from tests.helpers import accepted_events


def _tracker(collector: Collector, subject: Subject | None = None) -> Tracker:
    return Tracker("build", Emitter(collector.endpoint, flush_interval=0.05), subject=subject,
                   app_id="app")


def test_fresh_ids_are_distinct_version_4_uuids() -> None:
    for count in (1, 2, 3, 1024):
        ids = tracker_module._fresh_ids(count)
        assert len(ids) == count == len(set(ids))
        for text in ids:
            parsed = uuid.UUID(text)
            assert str(parsed) == text  # lower-case, dashed, 36 characters
            assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_event_ids_are_unique_across_pool_refills() -> None:
    ids = [tracker_module.new_event_id() for _ in range(3 * tracker_module._POOL_IDS + 7)]
    assert len(set(ids)) == len(ids)


def test_a_forked_child_never_reuses_the_parents_pool() -> None:
    tracker_module.new_event_id()  # the parent's pool is filled
    parent_next = list(tracker_module._pool.ids)[-5:]
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        ids = [tracker_module.new_event_id() for _ in range(5)]
        os.write(write_fd, " ".join(ids).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        child_ids = fh.read().split()
    os.waitpid(pid, 0)
    assert len(child_ids) == 5 and not set(child_ids) & set(parent_next)
    assert tracker_module.new_event_id() == parent_next[-1]  # the parent's pool goes on


def test_subject_changes_reach_the_next_event(collector: Collector) -> None:
    """The subject's fields are cached as sent; every setter invalidates the cache."""
    subject = Subject().set_user_id("first")
    tracker = _tracker(collector, subject)
    try:
        tracker.track(StructuredEvent("c", "a"))
        subject.set_user_id("second").set_lang("fr").set_screen_resolution(10, 20)
        tracker.track(StructuredEvent("c", "a"))
        subject.set_user_id(None)
        subject.set_platform("srv")
        tracker.track(StructuredEvent("c", "a"))
        other = Subject().set_ip_address("10.0.0.1")
        tracker.set_subject(other)
        tracker.track(StructuredEvent("c", "a"))
        tracker.set_subject(None)
        tracker.track(StructuredEvent("c", "a"))
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    first, second, third, fourth, fifth = accepted_events(collector)
    assert first["uid"] == "first" and first["p"] == "pc" and "lang" not in first
    assert (second["uid"], second["lang"], second["res"]) == ("second", "fr", "10x20")
    assert "uid" not in third and third["p"] == "srv" and third["lang"] == "fr"
    assert fourth["ip"] == "10.0.0.1" and "uid" not in fourth and fourth["p"] == "pc"
    assert "ip" not in fifth and "p" not in fifth
    for event in (first, second, third, fourth, fifth):
        assert event["aid"] == "app" and event["tna"] == "build"
        assert event["eid"] and event["dtm"].isdigit()


def test_event_subject_overrides_only_what_it_sets(collector: Collector) -> None:
    tracker = _tracker(collector, Subject().set_platform("srv").set_user_id("tracker"))
    try:
        tracker.track(StructuredEvent("c", "a", event_subject=Subject().set_user_id("event")))
        tracker.track(StructuredEvent("c", "a"))
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    overridden, plain = accepted_events(collector)
    assert (overridden["uid"], overridden["p"]) == ("event", "srv")
    assert (plain["uid"], plain["p"]) == ("tracker", "srv")


def test_numbers_are_kept_on_the_event_as_given_and_sent_as_text(
        collector: Collector) -> None:
    structured = StructuredEvent("c", "a", value=2.5)
    ping = PagePing("https://example.com", min_x=0, max_x=10, min_y=5, max_y=7)
    raw = Event(dict_={"e": "se", "se_ca": "c", "se_ac": "a", "se_va": 3, "extra": True})
    assert structured.value == 2.5 and ping.min_x == 0 and ping.max_y == 7
    ping.max_y = None
    assert ping.max_y is None and "pp_may" not in ping.payload.nv_pairs
    tracker = _tracker(collector)
    try:
        for event in (structured, ping, raw):
            tracker.track(event)
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    sent = accepted_events(collector)
    assert sent[0]["se_va"] == "2.5"
    assert (sent[1]["pp_mix"], sent[1]["pp_max"], sent[1]["pp_miy"]) == ("0", "10", "5")
    assert "pp_may" not in sent[1]
    assert (sent[2]["se_va"], sent[2]["extra"]) == ("3", "True")
    assert raw.payload.nv_pairs["se_va"] == "3"  # nv_pairs holds the values as sent


def test_payload_pairs_hold_text_whichever_way_they_are_set() -> None:
    pairs = Event(dict_={"a": 1}).payload.nv_pairs
    pairs["b"] = 2.5
    pairs.update({"c": 3}, d=4)
    pairs |= {"e": True}
    pairs.setdefault("f", 6)
    assert pairs == {"a": "1", "b": "2.5", "c": "3", "d": "4", "e": "True", "f": "6"}
    assert PayloadPairs({"g": 7}, h=8) == {"g": "7", "h": "8"}
    payload = Payload()
    payload.add("i", 9)
    payload.add("skipped", None)
    assert payload.nv_pairs == {"i": "9"}
    assert type(pairs.copy()) is dict


def test_a_plain_dict_assigned_to_nv_pairs_is_sent_as_text(collector: Collector) -> None:
    event = Event()
    event.payload.nv_pairs = {"e": "se", "se_ca": "c", "se_ac": "a", "se_va": 4}
    tracker = _tracker(collector)
    try:
        tracker.track(event)
        event.payload.nv_pairs["se_va"] = "5"
        tracker.track(event)
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    assert [sent["se_va"] for sent in accepted_events(collector)] == ["4", "5"]
    assert event.payload.nv_pairs["se_va"] == "5"


def test_tracker_fields_win_over_the_same_keys_set_on_the_event(
        collector: Collector) -> None:
    tracker = _tracker(collector)
    event = Event(dict_={"e": "se", "se_ca": "c", "se_ac": "a", "tna": "mine",
                         "eid": "not-an-id", "p": "tv"})
    try:
        first = tracker.track(event)
        second = tracker.track(StructuredEvent("c", "a"))
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    sent = accepted_events(collector)
    assert [e["eid"] for e in sent] == [first, second]
    assert sent[0]["tna"] == sent[1]["tna"] != "mine"
    assert sent[0]["p"] == sent[1]["p"] != "tv"
    assert event.payload.nv_pairs["eid"] == "not-an-id"


def test_track_rejects_what_is_not_an_event(collector: Collector) -> None:
    tracker = _tracker(collector)
    try:
        with pytest.raises(TypeError, match="takes an Event"):
            tracker.track({"e": "se"})  # type: ignore[arg-type]
    finally:
        tracker.close(2)
    assert tracker.stats().tracked == 0


@pytest.mark.parametrize("method", ["post", "get"])
def test_default_transport_request_head(collector: Collector, method: str) -> None:
    """The request the keep-alive socket client writes: Host with the port, this library's
    User-Agent, the POST content type and a body length the collector could parse."""
    emitter = Emitter(collector.endpoint, method=method, batch_size=2)
    tracker = Tracker("head", emitter)
    try:
        tracker.track(StructuredEvent("c", "a", label="é ü"))
        tracker.track(StructuredEvent("c", "a"))
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    requests = collector.requests()
    assert requests and all(r.accepted for r in requests)
    head = requests[0].headers
    assert head["host"] == f"127.0.0.1:{collector.port}"
    assert head["user-agent"].startswith("snowplow-threaded/")
    if method == "post":
        assert head["content-type"] == "application/json; charset=utf-8"
        assert int(head["content-length"]) == len(requests[0].body)
    assert [e["se_la"] for e in accepted_events(collector) if "se_la" in e] == ["é ü"]
    assert len({r.connection for r in requests}) == 1  # one kept-alive connection


def test_non_ascii_endpoint_path_is_percent_encoded(collector: Collector) -> None:
    emitter = Emitter(collector.endpoint + "/café", batch_size=1)
    tracker = Tracker("path", emitter)
    try:
        tracker.track(StructuredEvent("c", "a"))
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    (request,) = collector.requests()
    assert request.path.startswith("/caf%C3%A9/") and request.accepted


def test_a_subject_change_racing_the_merge_is_seen_by_the_next_event(
        collector: Collector) -> None:
    class Racing(Subject):
        """Another thread sets a field right after the tracker read the subject's cache."""
        __slots__ = ("race",)

        def _cached_wire(self) -> tuple[dict[str, str], dict[str, str]]:
            wire = super()._cached_wire()
            if self.race:
                self.race = False
                self.set_user_id("after")
            return wire

    subject = Racing().set_user_id("before")
    subject.race = True
    tracker = _tracker(collector, subject)
    try:
        tracker.track(StructuredEvent("c", "first"))  # merged with "before": raced
        tracker.track(StructuredEvent("c", "second"))
        assert tracker.flush(timeout=5)
    finally:
        tracker.close(2)
    assert [e["uid"] for e in accepted_events(collector)] == ["before", "after"]


def test_self_describing_text_that_is_not_valid_unicode_is_encoded_as_a_replacement(
        caplog: pytest.LogCaptureFixture) -> None:
    """A lone surrogate in self-describing data or a context cannot be UTF-8: with base64
    on, track() encodes it as U+FFFD (as the transport does for plain fields) instead of
    raising UnicodeEncodeError."""
    tracker = Tracker("ns", Emitter("http://127.0.0.1:9"))
    try:
        event = SelfDescribing(
            SelfDescribingJson("iglu:com.acme/x/jsonschema/1-0-0", {"a": "b\ud800"}),
            context=[SelfDescribingJson("iglu:com.acme/c/jsonschema/1-0-0", {"k": "\udcff"})])
        with caplog.at_level("WARNING", logger="snowplow_threaded"):
            nv = tracker.complete_payload(event).nv_pairs
        unstruct = json.loads(base64.urlsafe_b64decode(nv["ue_px"]))
        contexts = json.loads(base64.urlsafe_b64decode(nv["cx"]))
        assert unstruct["data"]["data"] == {"a": "b\ufffd"}
        assert contexts["data"][0]["data"] == {"k": "\ufffd"}
        assert "lone surrogate" in caplog.text
    finally:
        tracker.close(0)


class Colour(str, enum.Enum):
    RED = "red"


def test_str_subclass_values_are_sent_as_the_text_they_hold() -> None:
    """An enum with a str mixin is sent as "red" (as json.dumps and the reference send
    it), never as its str() "Colour.RED", and every record holds exact strs, so each
    encoder of the transport writes the same bytes."""
    tracker = Tracker("ns", Emitter("http://127.0.0.1:9"),
                      subject=Subject().set_user_id(Colour.RED))
    try:
        event = StructuredEvent(Colour.RED, Colour.RED, label=Colour.RED)
        plain = Event()
        plain.payload.nv_pairs = {"e": "se", "se_ca": Colour.RED}  # type: ignore[assignment]
        records: list[dict[str, str]] = []
        saved = tracker._single_admit
        tracker._single_admit = lambda record, pid: records.append(payload_of(record))  # type: ignore[assignment]
        tracker.track(event)
        tracker.track(plain)
        for record in records:
            assert all(type(v) is str for v in record.values()), record
        assert [records[0][k] for k in ("se_ca", "se_ac", "se_la", "uid")] == ["red"] * 4
        assert records[1]["se_ca"] == "red"
        tracker._single_admit = saved
    finally:
        tracker.close(0)


class _Entity(SelfDescribingJson):
    """A subclass: accepted wherever a SelfDescribingJson is."""


@pytest.mark.parametrize("extra", [{}, {"true_timestamp": 1_700_000_000_000}],
                         ids=["no-other-argument", "with-true-timestamp"])
def test_an_event_keeps_its_own_copy_of_the_context_list(extra: dict[str, int]) -> None:
    first = SelfDescribingJson("iglu:com.acme/c/jsonschema/1-0-0", {"k": 1})
    entities: list[SelfDescribingJson] = [first, _Entity("iglu:com.acme/d/jsonschema/1-0-0", {})]
    event = SelfDescribing(SelfDescribingJson("iglu:com.acme/e/jsonschema/1-0-0", {}),
                           context=entities, **extra)  # type: ignore[arg-type]
    entities.append(first)
    entities[1] = first
    assert event.context is not entities
    assert [type(e) for e in event.context] == [SelfDescribingJson, _Entity]
    with pytest.raises(TypeError, match="context"):
        SelfDescribing(first, context=[first, {"schema": "x", "data": {}}],  # type: ignore[list-item]
                       **extra)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="event_json"):
        SelfDescribing({"schema": "x", "data": {}})  # type: ignore[arg-type]
    assert SelfDescribing(_Entity("iglu:com.acme/e/jsonschema/1-0-0", {})).event_json.schema \
        == "iglu:com.acme/e/jsonschema/1-0-0"


def test_a_subclass_setter_runs_when_the_event_is_built() -> None:
    """The constructors skip the property setters only for classes that keep ours: a
    subclass's own setter still sees every value, as it would without the shortcut."""
    seen: list[tuple[str, object]] = []

    class Audited(SelfDescribing):
        @SelfDescribing.context.setter  # type: ignore[attr-defined, untyped-decorator]
        def context(self, value: list[SelfDescribingJson] | None) -> None:
            seen.append(("context", value))
            SelfDescribing.context.fset(self, value)  # type: ignore[attr-defined]

        @SelfDescribing.event_json.setter  # type: ignore[attr-defined, untyped-decorator]
        def event_json(self, value: SelfDescribingJson) -> None:
            seen.append(("event_json", value))
            SelfDescribing.event_json.fset(self, value)  # type: ignore[attr-defined]

    entity = SelfDescribingJson("iglu:com.acme/c/jsonschema/1-0-0", {"k": 1})
    event = Audited(entity, context=[entity])
    assert seen == [("context", [entity]), ("event_json", entity)]
    assert event.context == [entity] and event.event_json is entity
    assert SelfDescribing._own_setters and not Audited._own_setters
