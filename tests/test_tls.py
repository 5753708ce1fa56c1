"""HTTPS to a collector with a self-signed certificate, through the default transport
(``http.client``) and through a user's ``requests.Session``: refused (retried, reported,
never raised) unless the certificate is trusted; delivered once it is."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from snowplow_threaded import Emitter, StructuredEvent, Tracker
from snowplow_threaded.collector import Collector
from stress.tls import TlsFront, TlsUnavailable, make_self_signed
from tests.helpers import accepted_events, eventually, require


@pytest.fixture
def tls(collector: Collector, tmp_path: Path) -> Iterator[tuple[TlsFront, Path]]:
    try:
        cert, key = make_self_signed(tmp_path)
    except TlsUnavailable as exc:  # openssl and cryptography both absent
        require(False, f"a way to make a certificate ({exc})")
        raise
    with TlsFront(collector.port, cert, key) as front:
        yield front, cert


def _send(endpoint: str, n: int, **kwargs: object) -> Emitter:
    emitter = Emitter(endpoint, batch_size=5, flush_interval=0.1, request_timeout=2.0,
                      max_retry_delay_seconds=0.2, **kwargs)  # type: ignore[arg-type]
    tracker = Tracker("tls", emitter)
    for i in range(n):
        tracker.track(StructuredEvent("tls", "event", value=i))
    return emitter


def _track(endpoint: str, n: int, **kwargs: object) -> tuple[Emitter, bool]:
    emitter = _send(endpoint, n, **kwargs)
    return emitter, emitter.flush(timeout=10)


def test_untrusted_certificate_is_refused_and_reported(
    collector: Collector, tls: tuple[TlsFront, Path]
) -> None:
    front, _cert = tls
    emitter = _send(front.endpoint, 5)
    assert eventually(lambda: emitter.stats().retried >= 5)  # refused, and refused again
    stats = emitter.stats()
    emitter.close(timeout=0.05)
    assert stats.sent == 0 and not accepted_events(collector)
    assert stats.last_error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in stats.last_error or "certificate" in stats.last_error


def test_refused_handshake_is_known_not_received(
    collector: Collector, tls: tuple[TlsFront, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing leaves before the handshake: the failure must not warn about duplicates,
    with the default transport or with a user's session."""
    front, _cert = tls
    for kwargs in ({}, {"session": requests.Session()}):
        caplog.clear()

        def warnings() -> list[str]:
            return [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]

        emitter = _send(front.endpoint, 2, **kwargs)
        assert eventually(lambda: bool(warnings()))
        emitter.close(timeout=0.05)
        assert emitter.stats().sent == 0
        assert not any("may duplicate" in w for w in warnings()), warnings()


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_trusted_through_ca_bundle_environment(
    collector: Collector, tls: tuple[TlsFront, Path], monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    """Either variable names the CA bundle (as for ``requests``), for the default
    transport."""
    front, cert = tls
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, str(cert))
    emitter, delivered = _track(front.endpoint, 12)
    emitter.close(timeout=2)
    assert delivered
    assert collector.wait_for(12, timeout=5)
    assert max(collections.Counter(e["eid"] for e in accepted_events(collector)).values()) == 1


def test_trusted_through_a_user_session(
    collector: Collector, tls: tuple[TlsFront, Path]
) -> None:
    front, cert = tls
    session = requests.Session()
    session.verify = str(cert)
    emitter, delivered = _track(front.endpoint, 7, session=session)
    emitter.close(timeout=2)
    session.close()
    assert delivered and collector.wait_for(7, timeout=5)
