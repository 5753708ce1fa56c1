"""TLS for the fault soak: a throw-away self-signed certificate and a TLS front.

The embedded collector speaks plain HTTP only. :class:`TlsFront` terminates TLS on
127.0.0.1 and relays the decrypted bytes to that collector, one backend connection per
client connection, so the collector's fault rules and records work unchanged.
Handshakes the client aborts (it does not trust the certificate) are counted with their
reason.

The certificate is generated at run time with the ``openssl`` command-line tool, or the
``cryptography`` package when there is no ``openssl`` (a self-signed certificate for
``IP:127.0.0.1`` and ``DNS:localhost``, valid one day); it is its own CA, so a client that
should trust it is given the certificate file itself.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path
from types import TracebackType

_RELAY_CHUNK = 65536
_HANDSHAKE_TIMEOUT = 5.0
_IDLE_TIMEOUT = 30.0


class TlsUnavailable(RuntimeError):
    """No way to make a certificate here (no ``openssl`` command, no ``cryptography``)."""


def make_self_signed(directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` (self-signed, 127.0.0.1/localhost) into
    *directory*; return their paths."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        _make_with_cryptography(cert, key)
        return cert, key
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=snowplow-soak",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def _make_with_cryptography(cert_path: Path, key_path: Path) -> None:
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise TlsUnavailable("neither the openssl command nor the cryptography package "
                             "is installed") from None
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "snowplow-soak")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


class TlsFront:
    """Accepts TLS connections on ``127.0.0.1:<port>`` and relays each to
    ``127.0.0.1:<backend_port>`` in plain text. Daemon threads: one to accept, one per
    connection (a ``select`` loop; a TLS socket is never read and written from two
    threads)."""

    def __init__(self, backend_port: int, certfile: Path, keyfile: Path) -> None:
        self.backend_port = backend_port
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(str(certfile), str(keyfile))
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.handshakes_ok = 0
        #: reason of every handshake that failed (e.g. "TLSV1_ALERT_UNKNOWN_CA")
        self.handshake_failures: list[str] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="tls-front",
                                          daemon=True)
        self._acceptor.start()

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> TlsFront:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Close the listener and every relayed connection; join the threads (bounded)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        self._acceptor.join(2.0)
        for thread in threads:
            thread.join(2.0)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(raw,), name="tls-front-conn",
                                      daemon=True)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def _serve(self, raw: socket.socket) -> None:
        self._track(raw, True)
        try:
            raw.settimeout(_HANDSHAKE_TIMEOUT)
            try:
                tls = self._context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or type(exc).__name__
                with self._lock:
                    self.handshake_failures.append(str(reason))
                return
            with self._lock:
                self.handshakes_ok += 1
            self._track(tls, True)
            try:
                backend = socket.create_connection(("127.0.0.1", self.backend_port), timeout=5)
            except OSError:
                tls.close()  # the collector is down: the client sees the connection close
                return
            self._track(backend, True)
            try:
                self._relay(tls, backend)
            finally:
                for sock in (tls, backend):
                    self._track(sock, False)
                    with contextlib.suppress(OSError):
                        sock.close()
        finally:
            self._track(raw, False)
            with contextlib.suppress(OSError):
                raw.close()

    def _relay(self, tls: ssl.SSLSocket, backend: socket.socket) -> None:
        tls.settimeout(_IDLE_TIMEOUT)
        backend.settimeout(_IDLE_TIMEOUT)
        peers: dict[socket.socket, socket.socket] = {tls: backend, backend: tls}
        while not self._stopping.is_set():
            # decrypted bytes already buffered inside the TLS object do not wake select()
            ready = [tls] if tls.pending() else select.select(list(peers), [], [],
                                                              _IDLE_TIMEOUT)[0]
            if not ready:
                return  # idle
            for source in ready:
                try:
                    data = source.recv(_RELAY_CHUNK)
                    if not data:
                        return
                    peers[source].sendall(data)
                except (OSError, ssl.SSLError):
                    return
