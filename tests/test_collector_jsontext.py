"""collector/jsontext.py: JSON from clients parsed strictly (no NaN, Infinity, 1e400; lone
surrogates made U+FFFD) and, when large, in slices: no single C call of the ``json`` module
sees more than a bounded number of values, so other threads (the event loop) keep running."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from snowplow_threaded.collector import jsontext
from snowplow_threaded.collector.jsontext import load_json


def random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.4:
        return rng.choice([None, True, False, rng.randint(-10**6, 10**6), rng.random() * 1e6,
                           "", "a,b", "x" * rng.randint(0, 50), '"[{,}]"', "\u00e9\U0001f600",
                           10**30, -0.0])
    if roll < 0.7:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 12))]
    return {f"k{rng.randint(0, 30)}{',' * rng.randint(0, 2)}": random_json(rng, depth + 1)
            for _ in range(rng.randint(0, 8))}


@pytest.mark.parametrize("budget", [1, 3, 50, 20_000])
def test_sliced_parse_equals_json_loads(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    monkeypatch.setattr(jsontext, "_C_BUDGET", budget)
    rng = random.Random(budget)
    for _ in range(300):
        value = random_json(rng)
        for text in (json.dumps(value), json.dumps(value, indent=rng.randint(0, 2)),
                     json.dumps(value, separators=(",", ":"))):
            assert load_json(text) == json.loads(text), text


@pytest.mark.parametrize("budget", [1, 5, 20_000])
def test_sliced_parse_rejects_what_json_rejects(monkeypatch: pytest.MonkeyPatch,
                                                budget: int) -> None:
    monkeypatch.setattr(jsontext, "_C_BUDGET", budget)
    rng = random.Random(7)
    for _ in range(300):
        text = json.dumps(random_json(rng))
        cut = rng.randrange(len(text) + 1)
        broken = rng.choice([text[:cut], text[:cut] + "," + text[cut:], text[:cut] + "]",
                             text + " x", text.replace(":", "", 1), text.replace('"', "'", 1)])
        try:
            expected = json.loads(broken)
        except ValueError:
            with pytest.raises(ValueError, match="not valid JSON"):
                load_json(broken)
        else:
            assert load_json(broken) == expected


@pytest.mark.parametrize("text", [
    "NaN", "-Infinity", '{"a": Infinity}', "[1e400]", "-1e999", '{"se_va": 1E+309}',
    "1" * 5000,  # beyond the interpreter's integer digit limit
])
def test_numbers_that_cannot_be_written_back_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        load_json(text)


def test_lone_surrogates_become_replacement_characters() -> None:
    value = load_json('{"tv": "\\ud800", "\\udfff": ["\\ud83d\\ude00", "a\\uDC00b"]}')
    assert value == {"tv": "\ufffd", "\ufffd": ["\U0001f600", "a\ufffdb"]}
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # encodable again


def test_deep_nesting_is_refused_not_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    for budget in (1, 20_000):
        monkeypatch.setattr(jsontext, "_C_BUDGET", budget)
        with pytest.raises(ValueError, match="nested too deeply"):
            load_json("[" * 100_000 + "]" * 100_000)


def test_no_c_call_sees_more_than_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each call into the C scanner covers at most _C_BUDGET structural characters (values),
    whatever the shape: many small events, one dense array, a huge string."""
    seen: list[int] = []
    real = jsontext._scan_once

    def counting(text: str, index: int) -> tuple[Any, int]:
        value, end = real(text, index)
        seen.append(jsontext._structure(text, index, end))
        return value, end

    monkeypatch.setattr(jsontext, "_scan_once", counting)
    monkeypatch.setattr(jsontext, "_DECODER", None)  # the one-call path must not be taken
    event = {"e": "pv", "tv": "t", "p": "web", "co": json.dumps({"data": [{"a": 1}] * 50})}
    documents = [
        json.dumps({"schema": "iglu:x", "data": [event] * 5000}),
        "[" + ",".join(["[]"] * 100_000) + "]",
        json.dumps([{"k": list(range(30_000))}, "x" * 3_000_000, {"deep": [[[[1, 2]]]] * 9000}]),
    ]
    for text in documents:
        seen.clear()
        assert load_json(text) == json.loads(text)
        assert seen and max(seen) <= jsontext._C_BUDGET
