"""Settings declared once (``snowplow_threaded.settings``): every constructor, the
integrations and the docs take them from :class:`EmitterSettings`."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest
import snowplow_tracker

from snowplow_threaded import AsyncEmitter, Emitter, EmitterConfiguration
from snowplow_threaded.contrib.config import ConfigError, parse_config
from snowplow_threaded.settings import (
    DEFAULTS,
    NAMES,
    POSITIONAL,
    EmitterSettings,
    markdown_table,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_the_docs_table_is_the_declared_one() -> None:
    """Regenerate with ``python -c 'from snowplow_threaded.settings import markdown_table;
    print(markdown_table())'`` when a setting changes."""
    assert markdown_table() in DOCS.read_text()


@pytest.mark.parametrize("cls", [Emitter, AsyncEmitter, EmitterConfiguration])
def test_every_setting_is_a_parameter_of_every_constructor(cls: type) -> None:
    params = inspect.signature(cls).parameters
    # custom_retry_codes: None (no shared mutable default) stands for the declared {}
    assert {name: params[name].default for name in NAMES} == {**DEFAULTS,
                                                              "custom_retry_codes": None}


def test_the_reference_order_of_positional_settings() -> None:
    reference = [name for name in inspect.signature(snowplow_tracker.EmitterConfiguration)
                 .parameters]
    assert list(POSITIONAL) == reference
    config = EmitterConfiguration(5, None, None, 2000)
    assert (config.batch_size, config.byte_limit) == (5, 2000)


@pytest.mark.parametrize("cls", [Emitter, AsyncEmitter])
def test_an_unknown_setting_names_itself(cls: type) -> None:
    with pytest.raises(TypeError, match="flush_intervall"):
        cls("collector.example.com", flush_intervall=1.0)


def test_settings_are_checked_once_and_then_frozen() -> None:
    codes = {503: False}
    settings = EmitterSettings(custom_retry_codes=codes, flush_interval=2.0)
    codes[500] = False  # the caller's dict: the settings keep their own copy
    assert settings.custom_retry_codes == {503: False}
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.flush_interval = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="flush_interval"):
        EmitterSettings(flush_interval=0)
    emitter = Emitter("collector.example.com", flush_interval=2.0, max_retries=3)
    try:
        assert emitter.settings.flush_interval == 2.0
        assert emitter._dispatcher.settings is emitter.settings  # passed whole
    finally:
        emitter.close(0)


def test_a_configuration_change_makes_new_settings() -> None:
    config = EmitterConfiguration(batch_size=5)
    before = config.settings
    config.flush_interval = 2.5
    assert config.settings.flush_interval == 2.5 and before.flush_interval == 1.0
    assert config.as_kwargs() == {**DEFAULTS, "batch_size": 5, "flush_interval": 2.5}


def test_the_integrations_take_every_setting() -> None:
    values: dict[str, Any] = {name: DEFAULTS[name] for name in NAMES}
    parsed = parse_config({"endpoint": "collector.example.com", "emitter": values},
                          default_namespace="t")
    assert parsed.emitter.as_kwargs() == DEFAULTS
    with pytest.raises(ConfigError, match="unknown emitter setting 'nope'"):
        parse_config({"endpoint": "collector.example.com", "emitter": {"nope": 1}},
                      default_namespace="t")
