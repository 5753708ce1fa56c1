"""batch_json: the template encoder gives the very bytes of the json module, for every
kind of text, and falls back to the C encoder when a character needs escaping."""

from __future__ import annotations

import json
import random

import pytest

from snowplow_threaded import batch_json
from snowplow_threaded.batch_json import records_json


def reference(records: list[dict[str, str]]) -> bytes:
    return json.dumps(records, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


TRICKY = [
    "", "plain", 'say "hi"', "back\\slash", "tab\there", "line\nbreak", "\r", "\x00", "\x1f",
    "\x7f", "é café", "日本語", "emoji 🎉", "nbsp\xa0here", "sep\u2028\u2029", "%s", "%%",
    "%(name)s", "%d", "a%", '","x":"', "}{][", "/slashes/", "iglu:com.acme/x/jsonschema/1-0-0",
]


@pytest.mark.parametrize("value", TRICKY)
def test_every_kind_of_value_encodes_as_the_json_module_does(value: str) -> None:
    records = [{"e": "se", "se_ca": value, "eid": "x"}, {"e": "pv", "url": value}]
    assert records_json(records) == reference(records)


@pytest.mark.parametrize("key", ["%", "%s", 'q"uote', "back\\", "ctl\x01", "ключ", ""])
def test_unusual_keys_encode_as_the_json_module_does(key: str) -> None:
    records = [{key: "v", "e": "se"}]
    assert records_json(records) == reference(records)


def test_empty_batch_and_empty_record() -> None:
    assert records_json([]) == b"[]"
    assert records_json([{}]) == reference([{}])


def test_mixed_shapes_keep_each_record_and_its_key_order() -> None:
    records = [{"e": "se", "a": "1"}, {"a": "1", "e": "se"}, {"z": "last"}] * 3
    out = records_json(records)
    assert out == reference(records)
    assert [list(r) for r in json.loads(out)] == [list(r) for r in records]


def test_one_escaped_character_in_a_large_batch_uses_the_c_encoder_for_all_of_it() -> None:
    records = [{"e": "se", "n": str(i)} for i in range(100)]
    records[77]["n"] = 'has "quotes" and \\ and \n'
    assert len(records) > batch_json._SLICE  # the sliced fallback
    assert records_json(records) == reference(records)


@pytest.mark.parametrize("size", [1, 3, 100])  # first record, later record, sliced fallback
def test_a_lone_surrogate_is_sent_as_a_replacement_character(
        size: int, caplog: pytest.LogCaptureFixture) -> None:
    records = [{"e": "se", "n": str(i)} for i in range(size)]
    records[-1]["se_la"] = "bad \ud800 text"
    records[0]["\udcff"] = "key too"
    with caplog.at_level("WARNING", logger="snowplow_threaded"):
        out = records_json(records)
    decoded = json.loads(out.decode("utf-8"))  # valid UTF-8, valid JSON
    assert decoded[-1]["se_la"] == "bad \ufffd text"
    assert decoded[0]["\ufffd"] == "key too"
    assert [r["n"] for r in decoded] == [str(i) for i in range(size)]
    assert "lone surrogate" in caplog.text


def test_wire_record_fixes_only_what_cannot_be_sent() -> None:
    good = {"e": "se", "se_la": "日本 🎉"}
    assert batch_json.wire_record(good) is good
    bad = {"e": "se", "se_la": "x\ud83d"}
    assert batch_json.wire_record(bad) == {"e": "se", "se_la": "x\ufffd"}
    assert bad["se_la"] == "x\ud83d"  # the record itself is left as it was


def test_more_shapes_than_the_template_cache_holds() -> None:
    records = [{f"k{i}": "v", "e": "se"} for i in range(batch_json._TEMPLATES_MAX + 20)]
    assert records_json(records) == reference(records)
    assert len(batch_json._TEMPLATES) <= batch_json._TEMPLATES_MAX


def test_random_text_matches_the_json_module() -> None:
    rng = random.Random(1234)
    alphabet = 'ab%s"\\\t\n\x00\x1féü日🎉{}[],:\xa0\u2028 '
    for _ in range(300):
        records = [
            {"".join(rng.choices(alphabet, k=rng.randint(0, 4))) or "k": "".join(
                rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(rng.randint(0, 5))}
            for _ in range(rng.randint(0, 6))
        ]
        assert records_json(records) == reference(records), records


def test_text_with_nothing_to_escape_never_reaches_the_c_encoder(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(records: object) -> str:
        raise AssertionError("the C encoder was used")

    monkeypatch.setattr(batch_json, "encode_records", refuse)
    rng = random.Random(99)
    alphabet = "abc%s%%é日🎉{}[],:/=-_ \xa0\u2028"
    for _ in range(200):
        records = [{"".join(rng.choices(alphabet, k=rng.randint(1, 4))): "".join(
            rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(rng.randint(0, 5))}
            for _ in range(rng.randint(0, 40))]
        assert records_json(records) == reference(records), records
    with pytest.raises(AssertionError, match="C encoder"):
        records_json([{"e": 'a"b'}])


def test_a_batch_whose_first_record_needs_escaping_skips_the_templates(
        monkeypatch: pytest.MonkeyPatch) -> None:
    filled: list[int] = []
    real = batch_json._filled

    def counting(records: list[dict[str, str]]) -> tuple[bytes, int]:
        filled.append(len(records))
        return real(records)

    monkeypatch.setattr(batch_json, "_filled", counting)
    records = [{"e": "ue", "ue_pr": '{"schema":"iglu:x/y/jsonschema/1-0-0"}'}] * 50
    assert records_json(records) == reference(records)
    assert filled == [1]  # only the first record was tried


def test_keys_that_are_not_strings_go_through_the_c_encoder() -> None:
    records = [{"e": "se", 7: "seven", None: "none"}]  # type: ignore[dict-item]
    assert records_json(records) == reference(records)  # type: ignore[arg-type]


def test_wire_record_makes_keys_and_values_that_are_not_strings_text() -> None:
    odd = {"e": "pv", 7: 8.5}  # type: ignore[dict-item]
    assert batch_json.wire_record(odd) == {"e": "pv", "7": "8.5"}  # type: ignore[arg-type]
    bad = {"e": "\ud800", 7: 8}  # type: ignore[dict-item]
    assert batch_json.wire_record(bad) == {"e": "\ufffd", "7": "8"}  # type: ignore[arg-type]
