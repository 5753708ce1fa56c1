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
from tests.helpers import accepted_events, require


@pytest.fixture
def tls(collector: Collector, tmp_path: Path) -> Iterator[tuple[TlsFront, Path]]:
    try:
        cert, key = make_self_signed(tmp_path)
    except TlsUnavailable as exc:  # openssl and cryptography both absent
        require(False, f"a way to make a certificate ({exc})")
        raise
    with TlsFront(collector.port, cert, key) as front:
        yield front, cert


def _track(endpoint: str, n: int, **kwargs: object) -> tuple[Emitter, bool]:
    emitter = Emitter(endpoint, batch_size=5, flush_interval=0.1, request_timeout=2.0,
                      **kwargs)  # type: ignore[arg-type]
    tracker = Tracker("tls", emitter)
    for i in range(n):
        tracker.track(StructuredEvent("tls", "event", value=i))
    delivered = emitter.flush(timeout=3)
    return emitter, delivered


def test_untrusted_certificate_is_refused_and_reported(
    collector: Collector, tls: tuple[TlsFront, Path]
) -> None:
    front, _cert = tls
    emitter, delivered = _track(front.endpoint, 5)
    stats = emitter.stats()
    emitter.close(timeout=0.5)
    assert not delivered and stats.sent == 0 and not accepted_events(collector)
    assert stats.retried >= 5 and stats.last_error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in stats.last_error or "certificate" in stats.last_error


def test_refused_handshake_is_known_not_received(
    collector: Collector, tls: tuple[TlsFront, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing leaves before the handshake: the failure must not warn about duplicates,
    with the default transport or with a user's session."""
    front, _cert = tls
    for kwargs in ({}, {"session": requests.Session()}):
        caplog.clear()
        emitter, delivered = _track(front.endpoint, 2, **kwargs)
        emitter.close(timeout=0.2)
        assert not delivered
        warnings = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
        assert warnings and not any("may duplicate" in w for w in warnings), warnings


def test_trusted_through_ca_bundle_environment(
    collector: Collector, tls: tuple[TlsFront, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    front, cert = tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
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
