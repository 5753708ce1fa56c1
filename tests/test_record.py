"""record: the bytes an event is held as give exactly the JSON of the json module, for
every kind of text, whichever way they are made (templates on the caller's thread, or the C
encoder when a value needs escaping); request bodies are joined from them."""

from __future__ import annotations

import json
import random

import pytest

from snowplow_threaded import record as record_module
from snowplow_threaded.record import (
    CommonFields,
    body_size,
    get_fields,
    payload_of,
    post_body,
    record_of,
)

TRACKER = {"p": "srv", "tv": "py-x", "tna": "ns", "aid": "app"}

TRICKY = [
    "", "plain", 'say "hi"', "back\\slash", "tab\there", "line\nbreak", "\r", "\x00", "\x1f",
    "\x7f", "é café", "日本語", "emoji 🎉", "nbsp\xa0here", "sep\u2028\u2029", "%s", "%%",
    "%(name)s", "%d", "a%", '","x":"', "}{][", "/slashes/", "iglu:com.acme/x/jsonschema/1-0-0",
]


def reference(fields: dict[str, str]) -> bytes:
    """The record the json module would make: its JSON without the closing brace."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()[:-1]


def made(common: CommonFields, fields: dict[str, str], eid: str = "e-1",
         dtm: str = "17") -> bytes:
    return common.record(fields, eid, dtm)


@pytest.mark.parametrize("value", TRICKY)
def test_every_kind_of_value_is_the_json_of_the_json_module(value: str) -> None:
    common = CommonFields(object(), TRACKER)
    fields = {"e": "se", "se_ca": value, "se_la": "x"}
    expected = reference({**fields, **TRACKER, "eid": "e-1", "dtm": "17"})
    assert made(common, fields) == expected
    assert made(common, fields) == expected  # the template, cached
    assert record_of({**fields, **TRACKER, "eid": "e-1", "dtm": "17"}) == expected
    assert payload_of(expected)["se_ca"] == value


@pytest.mark.parametrize("value", TRICKY)
def test_the_tracker_fields_may_hold_anything(value: str) -> None:
    tracker = {**TRACKER, "uid": value, "ua": value + "%s"}
    common = CommonFields(object(), tracker)
    fields = {"e": "pv", "url": "https://x/?a=%s"}
    assert made(common, fields) == reference({**fields, **tracker, "eid": "e-1", "dtm": "17"})


@pytest.mark.parametrize("key", ["%", "%s", 'q"uote', "back\\", "ctl\x01", "ключ", ""])
def test_unusual_keys_are_the_json_of_the_json_module(key: str) -> None:
    common = CommonFields(object(), TRACKER)
    fields = {key: "v", "e": "se"}
    assert made(common, fields) == reference({**fields, **TRACKER, "eid": "e-1", "dtm": "17"})


def test_the_tracker_fields_win_over_the_same_keys_set_on_the_event() -> None:
    common = CommonFields(object(), TRACKER)
    fields = {"e": "se", "aid": "mine", "eid": "forged", "dtm": "0", "stm": "1"}
    got = payload_of(made(common, fields))
    assert got == {"e": "se", **TRACKER, "eid": "e-1", "dtm": "17"}
    assert list(got).count("aid") == 1


@pytest.mark.parametrize("where", ["event", "tracker"])
def test_a_lone_surrogate_is_sent_as_a_replacement_character(
        where: str, caplog: pytest.LogCaptureFixture) -> None:
    tracker = {**TRACKER, "uid": "u \udcff"} if where == "tracker" else TRACKER
    fields = {"e": "se", "se_la": "bad \ud800 text" if where == "event" else "ok"}
    with caplog.at_level("WARNING", logger="snowplow_threaded"):
        data = made(CommonFields(object(), tracker), fields)
        direct = record_of({"e": "se", "\udcff": "key too"})
    got = json.loads(data.decode("utf-8") + "}")  # valid UTF-8, valid JSON
    if where == "event":
        assert got["se_la"] == "bad \ufffd text"
    else:
        assert got["uid"] == "u \ufffd"
    assert payload_of(direct) == {"e": "se", "\ufffd": "key too"}
    assert "lone surrogate" in caplog.text


def test_random_text_matches_the_json_module() -> None:
    rng = random.Random(1234)
    alphabet = 'ab%s"\\\t\n\x00\x1féü日🎉{}[],:\xa0\u2028 '
    for _ in range(500):
        tracker = {"tv": "".join(rng.choices(alphabet, k=rng.randint(0, 6)))}
        fields = {"".join(rng.choices(alphabet, k=rng.randint(0, 4))) or "k": "".join(
            rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(rng.randint(0, 5))}
        common = CommonFields(object(), tracker)
        mine = {k: v for k, v in fields.items() if k not in common.keys}
        expected = reference({**mine, **tracker, "eid": "e-1", "dtm": "17"})
        assert made(common, fields) == expected, fields
        assert payload_of(expected) == {**mine, **tracker, "eid": "e-1", "dtm": "17"}


def test_text_with_nothing_to_escape_never_reaches_the_c_encoder(
        monkeypatch: pytest.MonkeyPatch) -> None:
    common = CommonFields(object(), TRACKER)

    def refuse(fields: object) -> str:
        raise AssertionError("the C encoder was used")

    monkeypatch.setattr(record_module, "encode_object", refuse)
    rng = random.Random(99)
    alphabet = "abc%s%%é日🎉{}[],:/=-_ "  # printable, nothing to escape
    for _ in range(300):
        fields = {"".join(rng.choices(alphabet, k=rng.randint(1, 4))): "".join(
            rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(rng.randint(0, 5))}
        expected = {**fields, **TRACKER, "eid": "e-1", "dtm": "17"}
        assert payload_of(made(common, fields)) == expected, fields
    with pytest.raises(AssertionError, match="C encoder"):
        made(common, {"e": 'a"b'})


@pytest.mark.parametrize("value", TRICKY)
def test_parts_made_by_the_library_are_escaped_when_json_and_win(value: str) -> None:
    """The parts track() adds (``e`` of a self-describing event, base64 or JSON text,
    ``ttm``) are not scanned: JSON text is escaped, and a part wins over the same key
    set on the event."""
    common = CommonFields(object(), TRACKER)
    fields = {"e": "pv", "url": value, "cx": "mine"}
    for parts in ({"e": "ue", "ue_px": "eyJhIjoxfQ==", "cx": "W10="},
                  {"e": "ue", "ue_pr": json.dumps({"v": value}), "co": '{"a": "\\"}'},
                  {"ttm": "1700000000000"}):
        got = common.record(fields, "e-1", "17", parts)
        expected = {**fields, **parts, **TRACKER, "eid": "e-1", "dtm": "17"}
        assert payload_of(got) == expected
        assert got == reference({**{k: v for k, v in fields.items() if k not in parts},
                                 **parts, **TRACKER, "eid": "e-1", "dtm": "17"})


def test_more_shapes_than_the_cache_holds() -> None:
    common = CommonFields(object(), TRACKER)
    for i in range(record_module._SHAPES_MAX + 20):
        fields = {f"k{i}": "v", "e": "se"}
        assert made(common, fields) == reference({**fields, **TRACKER, "eid": "e-1",
                                                  "dtm": "17"})
    assert len(common._shapes) <= record_module._SHAPES_MAX


def test_record_of_makes_values_and_keys_text_and_refuses_an_empty_payload() -> None:
    assert payload_of(record_of({"e": "pv", 7: 8.5, "n": None})) == {
        "e": "pv", "7": "8.5", "n": "None"}
    with pytest.raises(ValueError, match="at least one field"):
        record_of({})


def test_a_body_is_the_records_with_stm_and_body_size_is_exact() -> None:
    records = [record_of({"e": "se", "n": str(i), "t": TRICKY[i]}) for i in range(len(TRICKY))]
    body = post_body(records, "1700000000123")
    doc = json.loads(body)
    assert doc["schema"] == record_module.PAYLOAD_DATA_SCHEMA
    assert doc["data"] == [{**payload_of(r), "stm": "1700000000123"} for r in records]
    assert body_size(records) == len(body)
    assert get_fields(records[0], "5") == {**payload_of(records[0]), "stm": "5"}
