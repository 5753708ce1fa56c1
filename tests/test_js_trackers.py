"""The official Snowplow JavaScript trackers against the embedded collector, with default
options: ``@snowplow/node-tracker`` 4.x through every event type it offers (POST and GET,
base64 on and off, and with server anonymisation), and ``@snowplow/browser-tracker`` 4.x in
headless Chromium on a page of another origin (POST and GET, anonymous tracking included).
Every valid event must be good and every invalid one bad with its reason, as Snowplow Micro
judges them; the fields are checked through Micro's REST API.

The JavaScript side is ``tests/js`` (pinned in its ``package.json`` and lock file); its
``node_modules`` is installed here with ``npm ci`` when missing. Node.js and npm, and the
Debian ``chromium`` package, must be on the machine: without them these tests are skipped,
except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from snowplow_threaded.collector import Collector

JS_DIR = Path(__file__).resolve().parent / "js"
SP = "iglu:com.snowplowanalytics.snowplow/"
ZERO = "00000000-0000-0000-0000-000000000000"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    message = f"{what} is needed for the official JavaScript trackers' tests"
    if IN_CI:
        pytest.fail(message + " (CI runs them: install it in .ci/run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def node() -> str:
    """Node.js, with tests/js's pinned packages installed (``npm ci`` when missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("Node.js with npm")
    assert node is not None and npm is not None
    installed = JS_DIR / "node_modules" / "@snowplow"
    # one install at a time: every xdist worker runs this session fixture, and two `npm ci`
    # in one directory delete each other's files
    with (JS_DIR / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ((installed / "node-tracker").is_dir()
                and (installed / "browser-tracker").is_dir()):
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR,
                                  capture_output=True, text=True, timeout=600, check=False)
            assert done.returncode == 0, f"npm ci failed in {JS_DIR}:\n{done.stderr[-3000:]}"
    return node


@pytest.fixture(scope="session")
def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    _missing("Chromium (Debian: apt-get install -y chromium)")
    raise AssertionError("unreachable")


@pytest.fixture
def collector(micro_collector: Collector) -> Collector:
    return micro_collector


def micro_good(collector: Collector) -> dict[str, dict[str, Any]]:
    """Micro's /micro/good, by event id."""
    good = requests.get(collector.endpoint + "/micro/good", timeout=10).json()
    return {g["event"]["event_id"]: g for g in good}


def micro_bad(collector: Collector) -> dict[str, dict[str, Any]]:
    bad = requests.get(collector.endpoint + "/micro/bad", timeout=10).json()
    return {b["rawEvent"]["parameters"]["eid"]: b for b in bad if b["rawEvent"]}


#: node-tracker event -> (Micro's eventType, schema, the context entities it carries)
NODE_EVENTS: dict[str, tuple[str, str, list[str]]] = {
    "page view": ("page_view", SP + "page_view/jsonschema/1-0-0", ["web_page"]),
    "page ping": ("page_ping", SP + "page_ping/jsonschema/1-0-0", ["web_page"]),
    "structured": ("struct", "iglu:com.google.analytics/event/jsonschema/1-0-0",
                   ["web_page"]),
    "self-describing": ("unstruct", SP + "link_click/jsonschema/1-0-1", ["web_page"]),
    "transaction": ("transaction", SP + "transaction/jsonschema/1-0-0", []),
    "transaction item": ("transaction_item", SP + "transaction_item/jsonschema/1-0-0", []),
    "screen view": ("unstruct", SP + "screen_view/jsonschema/1-0-0", ["web_page"]),
    "link click": ("unstruct", SP + "link_click/jsonschema/1-0-1", []),
    "ad impression": ("unstruct", SP + "ad_impression/jsonschema/1-0-0", ["web_page"]),
    "ad click": ("unstruct", SP + "ad_click/jsonschema/1-0-0", []),
    "ad conversion": ("unstruct", SP + "ad_conversion/jsonschema/1-0-0", []),
    "social interaction": ("unstruct", SP + "social_interaction/jsonschema/1-0-0", []),
    "add to cart": ("unstruct", SP + "add_to_cart/jsonschema/1-0-0", []),
    "remove from cart": ("unstruct", SP + "remove_from_cart/jsonschema/1-0-0", []),
    "focus form": ("unstruct", SP + "focus_form/jsonschema/1-0-0", []),
    "change form": ("unstruct", SP + "change_form/jsonschema/1-0-0", []),
    "form submission": ("unstruct", SP + "submit_form/jsonschema/1-0-0", []),
    "site search": ("unstruct", SP + "site_search/jsonschema/1-0-0", []),
    "consent granted": ("unstruct", SP + "consent_granted/jsonschema/1-0-0",
                        ["consent_document"]),
    "consent withdrawn": ("unstruct", SP + "consent_withdrawn/jsonschema/1-0-0",
                          ["consent_document"]),
}
#: invalid node-tracker event -> (the field its reason names, the reason)
NODE_INVALID = {
    "unknown schema": ("ue_p", "event: unknown schema iglu:com.acme/unknown/jsonschema/1-0-0"),
    "invalid event data": ("ue_p", "/quantity: expected number, got string"),
    "invalid context": ("c", "context 0 (" + SP + "web_page/jsonschema/1-0-0) /id: "
                             "'not-a-uuid' does not match"),
    "category too long": ("se_ca", "se_ca: longer than 1000 characters (1001)"),
}


def run_node(node: str, collector: Collector, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run([node, str(JS_DIR / "node_tracker.mjs"), collector.endpoint,
                           *args], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    tracked = [json.loads(line) for line in done.stdout.splitlines()]
    assert collector.wait_for(len(tracked), timeout=20), collector.summary()
    return tracked


@pytest.mark.parametrize(("method", "encoding"), [
    ("post", "base64"), ("post", "plain"), ("get", "base64"), ("get", "plain")])
def test_node_tracker_every_event_type(node: str, collector: Collector, method: str,
                                       encoding: str) -> None:
    tracked = run_node(node, collector, method, encoding)
    assert {t["name"] for t in tracked} == set(NODE_EVENTS) | set(NODE_INVALID)
    good, bad = micro_good(collector), micro_bad(collector)
    assert (len(good), len(bad)) == (len(NODE_EVENTS), len(NODE_INVALID)), [
        b["errors"] for b in bad.values()]
    for sent in tracked:
        if not sent["valid"]:
            field, reason = NODE_INVALID[sent["name"]]
            [errors] = [b.errors for b in collector.bad() if b.parameters
                        and b.parameters["eid"] == sent["eid"]]
            assert len(errors) == 1 and errors[0].startswith(field), errors
            assert reason in errors[0], errors
            assert bad[sent["eid"]]["errors"][0] == "Error while validating the event."
            continue
        event_type, schema, entities = NODE_EVENTS[sent["name"]]
        shown = good[sent["eid"]]
        assert (shown["eventType"], shown["schema"]) == (event_type, schema), sent["name"]
        assert [c.split("/")[1] for c in shown["contexts"]] == entities, sent["name"]
        raw = shown["rawEvent"]
        assert raw["api"]["version"] == ("tp2" if method == "post" else "tp1")
        if entities or event_type == "unstruct":
            encoded = {"cx", "ue_px"} & set(raw["parameters"])
            plain = {"co", "ue_pr"} & set(raw["parameters"])
            assert (bool(encoded), bool(plain)) == (encoding == "base64", encoding == "plain")
        event = shown["event"]
        assert (event["app_id"], event["platform"], event["user_id"]) == (
            "js-clients", "srv", "user-1")
        assert event["v_tracker"] == "node-4.8.0"
        assert event["name_tracker"] == f"node-{method}-{encoding}"
        assert event["domain_userid"] == "5cea9899-10df-4ccf-bf66-8c36f4a4bba2"
        assert event["user_ipaddress"] == "127.0.0.1"
        assert event["network_userid"] is not None and event["network_userid"] != ZERO
    by_name = {t["name"]: good[t["eid"]]["event"] for t in tracked if t["valid"]}
    assert (by_name["structured"]["se_category"], by_name["structured"]["se_action"],
            by_name["structured"]["se_label"], by_name["structured"]["se_property"],
            by_name["structured"]["se_value"]) == ("shop", "buy", "l", "p", 2.5)
    view = by_name["page view"]
    assert (view["page_urlhost"], view["page_urlpath"], view["page_urlquery"],
            view["page_title"], view["refr_urlhost"]) == ("shop.example", "/a", "b=c", "A",
                                                          "ref.example")
    assert (by_name["page ping"]["pp_yoffset_max"], by_name["transaction"]["tr_total"],
            by_name["transaction"]["tr_currency"]) == (500, 20.0, "EUR")
    assert (by_name["transaction item"]["ti_sku"], by_name["transaction item"]["ti_price"],
            by_name["transaction item"]["ti_quantity"]) == ("sku-1", 5.0, 2)
    assert by_name["ad click"]["unstruct_event"]["data"]["data"]["cost"] == 0.5
    assert by_name["page view"]["contexts"]["data"][0]["data"] == {
        "id": "0a5e24b6-0df8-4b2e-ae2a-2a0bf8d9c1b4"}
    assert by_name["link click"]["contexts"] == {}  # none: Micro's empty contexts


def test_node_tracker_with_server_anonymisation(node: str, collector: Collector) -> None:
    tracked = run_node(node, collector, "post", "base64", "anonymous")
    good = micro_good(collector)
    assert len(good) == len(NODE_EVENTS)
    for sent in tracked:
        if sent["valid"]:
            shown = good[sent["eid"]]
            assert shown["event"]["network_userid"] == ZERO
            assert shown["event"]["user_ipaddress"] == "unknown"
            assert shown["rawEvent"]["context"]["ipAddress"] == "unknown"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_origin(node: str, tmp_path: Path) -> Iterator[str]:
    """The browser page and the tracker's UMD build, served on 127.0.0.1 (another origin
    than the collector's: another port, and the host name shop.test)."""
    shutil.copy(JS_DIR / "browser_page.html", tmp_path / "index.html")
    shutil.copy(JS_DIR / "node_modules" / "@snowplow" / "browser-tracker" / "dist" /
                "index.umd.min.js", tmp_path / "sp.js")

    def handler(*args: Any) -> _Quiet:
        return _Quiet(*args, directory=str(tmp_path))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://shop.test:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


BROWSER_KINDS = {"page_ping", "page_view", "struct", "unstruct"}


def page_done(collector: Collector, timeout: float) -> bool:
    """Wait until the page's events are in: one of each kind good (a page ping comes a
    second or more after the others) and the invalid one bad."""
    deadline = time.monotonic() + timeout
    while True:
        summary = collector.summary()
        kinds = {g.event_type for g in collector.good()}
        if summary.received_bad >= 1 and kinds.issuperset(BROWSER_KINDS):
            return True
        left = deadline - time.monotonic()
        received = summary.received_good + summary.received_bad
        if left <= 0 or not collector.wait_for(received + 1, timeout=left):
            return False


def run_browser(chromium: str, page: str, collector: Collector, tmp_path: Path,
                **options: str) -> None:
    """Open the page in headless Chromium until the collector has its events."""
    query = "&".join(f"{k}={v}" for k, v in {"collector": collector.endpoint,
                                               **options}.items())
    log = (tmp_path / "chromium.log").open("w")
    browser = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
         "--host-resolver-rules=MAP shop.test 127.0.0.1", f"{page}/index.html?{query}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        arrived = page_done(collector, timeout=60)
    finally:
        os.killpg(browser.pid, signal.SIGTERM)
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(browser.pid, signal.SIGKILL)
            browser.wait(10)
        log.close()
    assert arrived, (collector.summary(), (tmp_path / "chromium.log").read_text()[-3000:])


@pytest.mark.parametrize(("method", "base64", "anonymous"), [
    ("post", "1", "0"), ("get", "0", "0"), ("post", "0", "1")],
    ids=["post-base64", "get-plain", "post-anonymous"])
def test_browser_tracker_in_chromium(chromium: str, page_origin: str, collector: Collector,
                                     tmp_path: Path, method: str, base64: str,
                                     anonymous: str) -> None:
    run_browser(chromium, page_origin, collector, tmp_path, method=method, base64=base64,
                anonymous=anonymous)
    good = list(micro_good(collector).values())
    assert {g["eventType"] for g in good} == BROWSER_KINDS
    for shown in good:
        contexts = [c.split("/")[1] + "/" + c.split("/")[3] for c in shown["contexts"]]
        assert "web_page/1-0-0" in contexts and "browser_context/2-0-0" in contexts, contexts
        assert ("client_session/1-0-2" in contexts) == (anonymous == "0"), contexts
        raw = shown["rawEvent"]
        assert raw["api"]["version"] == ("tp2" if method == "post" else "tp1")
        headers = " ".join(raw["context"]["headers"]).lower()
        assert "origin: http://shop.test:" in headers
        event = shown["event"]
        assert event["app_id"] == "browser-clients" and event["platform"] == "web"
        assert event["v_tracker"].startswith("js-4.")
        assert event["page_urlhost"] == "shop.test" and event["page_urlpath"] == "/index.html"
        if shown["eventType"] in ("page_view", "page_ping"):
            assert event["page_title"] == "js clients"
        assert event["useragent"] and "Chrome" in event["useragent"]
        if anonymous == "1":
            assert event["network_userid"] == ZERO and event["user_ipaddress"] == "unknown"
            assert event["domain_userid"] is None and "sp-anonymous: *" in headers
        else:
            assert event["network_userid"] not in (None, ZERO)
            assert event["user_ipaddress"] == "127.0.0.1" and event["domain_userid"]
    struct = next(g["event"] for g in good if g["eventType"] == "struct")
    assert (struct["se_category"], struct["se_action"], struct["se_label"],
            struct["se_value"]) == ("shop", "add", "sku-1", 3.0)
    link = next(g for g in good if g["eventType"] == "unstruct")
    assert link["event"]["unstruct_event"]["data"]["data"] == {
        "targetUrl": "https://shop.example/next"}
    [bad] = collector.bad()
    assert len(bad.errors) == 1
    assert bad.errors[0].endswith("/targetUrl: shorter than 1 characters"), bad.errors
