"""Settings as deployments write them: ``trusted_proxies`` read from an environment variable
(a digit string is a number of proxy hops), and an endpoint without a scheme that names
this machine (sent over HTTPS, so a warning says to write ``http://``)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

import pytest
from flask import Flask

from snowplow_threaded import AsyncEmitter, Emitter, Snowplow
from snowplow_threaded.collector import Collector
from snowplow_threaded.contrib.config import ConfigError, parse_config
from snowplow_threaded.contrib.flask import SnowplowFlask
from snowplow_threaded.contrib.web import TrustedProxies
from snowplow_threaded.endpoint import is_loopback

# -- trusted_proxies --------------------------------------------------------------------------


@pytest.mark.parametrize(("setting", "hops"), [("1", 1), (" 2 ", 2), ("0", 0), (3, 3)])
def test_a_digit_string_is_a_number_of_hops(setting: object, hops: int) -> None:
    assert TrustedProxies.parse(setting) == TrustedProxies(hops=hops)
    config = parse_config({"endpoint": "https://c.example.com", "trusted_proxies": setting},
                          default_namespace="ns")
    assert config.trusted_proxies.hops == hops


@pytest.mark.parametrize("setting", ["-1", "1.5", "\uff11", "1x", "one"])
def test_what_is_neither_hops_nor_networks_says_both_forms(setting: str) -> None:
    with pytest.raises(ValueError, match="number of proxy hops, such as 1 or '1'"):
        TrustedProxies.parse(setting)
    with pytest.raises(ConfigError, match="number of proxy hops"):
        parse_config({"endpoint": "https://c.example.com", "trusted_proxies": setting},
                     default_namespace="ns")


@pytest.fixture
def flask_app(micro_collector: Collector, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """A Flask app configured from the environment, as deployments do: every value a
    string."""
    monkeypatch.setenv("SHOP_SNOWPLOW_TRUSTED_PROXIES", "1")
    monkeypatch.setenv("SHOP_SNOWPLOW_ENDPOINT", micro_collector.endpoint)
    monkeypatch.setenv("SHOP_SNOWPLOW_REQUEST_EVENTS", "page_view")
    app = Flask("deploy_settings")
    app.config.from_prefixed_env(prefix="SHOP", loads=str)
    assert app.config["SNOWPLOW_TRUSTED_PROXIES"] == "1"
    SnowplowFlask(app)

    @app.get("/")
    def index() -> str:
        return "ok"

    yield app
    app.extensions["snowplow"].close(5)


def test_hops_from_the_environment_pick_the_client(flask_app: Flask,
                                                   micro_collector: Collector) -> None:
    flask_app.test_client().get("/", headers={"X-Forwarded-For": "6.6.6.6, 203.0.113.9"},
                                environ_base={"REMOTE_ADDR": "10.1.1.1"})
    assert flask_app.extensions["snowplow"].flush(timeout=10)
    [event] = micro_collector.good()
    assert event.parameters["ip"] == "203.0.113.9"  # one hop: the proxy's peer


# -- an endpoint without a scheme that names this machine -------------------------------------


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "app.localhost", "127.0.0.1",
                                  "127.1.2.3", "[::1]", "::1"])
def test_loopback_names(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["collector.example.com", "10.0.0.1", "0.0.0.0",
                                  "localhost.example.com", "[2001:db8::1]"])
def test_other_names(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("endpoint", ["localhost:9090", "127.0.0.1", "[::1]:9090/prefix"])
def test_a_local_endpoint_without_a_scheme_warns(endpoint: str) -> None:
    with pytest.warns(UserWarning, match=re.escape(f"write 'http://{endpoint}'")) as caught:
        emitter = Emitter(endpoint)
    emitter.close(0)
    assert emitter.endpoint.startswith("https://")  # as in the reference
    assert caught[0].filename == __file__  # the line that built the emitter


def test_create_tracker_warns_at_the_callers_line() -> None:
    with pytest.warns(UserWarning, match="has no scheme") as caught:
        tracker = Snowplow.create_tracker("deploy-warning", "localhost:9090")
    try:
        assert caught[0].filename == __file__
    finally:
        Snowplow.remove_tracker(tracker)
        tracker.close(0)


@pytest.mark.parametrize(("endpoint", "protocol"), [
    ("http://localhost:9090", None), ("https://127.0.0.1", None), ("localhost", "https"),
    ("localhost", "http"), ("collector.example.com", None)])
def test_no_warning_when_the_scheme_is_chosen_or_the_host_is_elsewhere(
        endpoint: str, protocol: str | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emitter = Emitter(endpoint, protocol=protocol)  # type: ignore[arg-type]
        async_emitter = AsyncEmitter("localhost:9090")  # its default is http, as in the reference
    emitter.close(0)
    async_emitter.close(0)
    assert async_emitter.endpoint.startswith("http://")


def test_an_integration_with_a_local_endpoint_warns() -> None:
    app = Flask("deploy_warning")
    app.config["SNOWPLOW_ENDPOINT"] = "127.0.0.1:9090"
    with pytest.warns(UserWarning, match="write 'http://127.0.0.1:9090'"):
        SnowplowFlask(app)
    app.extensions["snowplow"].close(0)
