"""Parsing of HTTP/1.1 request heads and chunk-size lines, strictly as RFC 9112 asks.

What a proxy in front of the collector and the collector itself could read differently is
refused rather than guessed at (``400``, and the connection closed): white space other than
SP/HTAB around ``Content-Length`` or ``Transfer-Encoding`` values, control characters (NUL
included) in header values or the request target, any white space in a chunk size, a
``Transfer-Encoding`` in an HTTP/1.0 request, an HTTP/1.1 request without exactly one
``Host``, bare CR or LF. Transfer codings other than ``chunked`` get ``501``.

Raw bytes 0x80-0xFF in the request target are percent-encoded (``é`` sent raw as UTF-8
becomes ``%C3%A9``), so the target the handlers see is ASCII and raw UTF-8 decodes exactly
like its ``%``-escaped form. Pure functions; safe from any thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

from .http_types import Limits

__all__ = ["HTTPFailure", "Head", "chunk_size", "parse_head"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Control characters other than HTAB (CR and LF are the line ends, checked apart): none
#: may appear in a field value or the request target.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TARGET = re.compile(r"[\x21-\x7e\x80-\xff]+")
_DIGITS = re.compile(r"[0-9]{1,18}")
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:[ \t]*;[\t\x20-\x7e\x80-\xff]*)?")
_NON_ASCII = re.compile("[\x80-\xff]")


class HTTPFailure(Exception):
    """A request that gets an error reply (*status*) and a closed connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(slots=True)
class Head:
    """A parsed request head. ``headers`` has lower-case names (repeats joined by ``, ``);
    ``length`` is the body's length (``-1``: chunked)."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    lines: tuple[str, ...]
    keep_alive: bool
    length: int
    expect_continue: bool


def parse_head(raw: bytes, limits: Limits) -> Head:
    """The head of a request: *raw* is everything before the blank line. Raises
    :class:`HTTPFailure`."""
    text = raw.decode("latin-1")
    lines = text.split("\r\n")
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        raise HTTPFailure(HTTPStatus.BAD_REQUEST, "bare CR or LF in the request head")
    if _CONTROL.search(text) is not None:  # NUL, ESC...: in no field value or target
        raise HTTPFailure(HTTPStatus.BAD_REQUEST, "control character in the request head")
    words = lines[0].split(" ")
    if len(words) != 3 or _TOKEN.fullmatch(words[0]) is None:
        raise HTTPFailure(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = words
    if _TARGET.fullmatch(target) is None:
        raise HTTPFailure(HTTPStatus.BAD_REQUEST, "malformed request target")
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if _VERSION.fullmatch(version) is None:
            raise HTTPFailure(HTTPStatus.BAD_REQUEST, "malformed request line")
        raise HTTPFailure(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and 1.1")
    header_lines = tuple(lines[1:])
    if len(header_lines) > limits.max_headers:
        raise HTTPFailure(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header lines")
    headers: dict[str, str] = {}
    hosts = 0
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or _TOKEN.fullmatch(name) is None:
            raise HTTPFailure(HTTPStatus.BAD_REQUEST, "malformed header line")
        key = name.lower()
        value = value.strip(" \t")
        hosts += key == "host"
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if version == "HTTP/1.1" and hosts != 1:
        raise HTTPFailure(HTTPStatus.BAD_REQUEST, "an HTTP/1.1 request needs one Host header")
    if hosts and _HOST.fullmatch(headers["host"]) is None:
        raise HTTPFailure(HTTPStatus.BAD_REQUEST, "malformed Host header")
    path, query = _split_target(target)
    connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = ("close" not in connection if version == "HTTP/1.1"
                  else "keep-alive" in connection)
    length = _body_length(headers, version, limits)
    expect = headers.get("expect", "").lower() == "100-continue" and version == "HTTP/1.1"
    return Head(method, path, query, version, headers, header_lines, keep_alive, length,
                expect)


def _split_target(target: str) -> tuple[str, str]:
    """Path and query of a request target (origin or absolute form), ASCII only."""
    if _NON_ASCII.search(target) is not None:  # raw UTF-8 (or anything): %-escape it
        target = _NON_ASCII.sub(lambda m: f"%{ord(m.group()):02X}", target)
    if target.startswith(("http://", "https://")):  # absolute form
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    path, _, query = target.partition("?")
    return path, query


def _body_length(headers: dict[str, str], version: str, limits: Limits) -> int:
    coding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    if coding is not None:
        if version != "HTTP/1.1":
            raise HTTPFailure(HTTPStatus.BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request")
        if length is not None:
            raise HTTPFailure(HTTPStatus.BAD_REQUEST, "both Content-Length and Transfer-Encoding")
        if coding.lower() != "chunked":
            raise HTTPFailure(HTTPStatus.NOT_IMPLEMENTED, f"Transfer-Encoding {coding[:40]!r}")
        return -1
    if length is None:
        return 0
    if _DIGITS.fullmatch(length) is None:
        raise HTTPFailure(HTTPStatus.BAD_REQUEST, "bad Content-Length")
    size = int(length)
    if size > limits.max_body_bytes:
        raise HTTPFailure(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                          f"body over {limits.max_body_bytes} bytes")
    return size


def chunk_size(line: bytes) -> int:
    """The size on a chunk-size line (extensions allowed and ignored; no white space before
    the size or after it, except before an extension's ``;``). Raises
    :class:`HTTPFailure`."""
    match = _CHUNK_SIZE.fullmatch(line)
    if match is None:
        raise HTTPFailure(HTTPStatus.BAD_REQUEST, "bad chunk size")
    return int(match.group(1), 16)
