"""Static Iglu registries over HTTP(S): the schemas the collector does not hold itself.

A static registry serves ``GET {root}/schemas/VENDOR/NAME/FORMAT/VERSION`` (Iglu Central, a
bucket behind a web server, a local ``python -m http.server``...), as Snowplow Micro's Iglu
resolver reads it. :meth:`Registry.fetch` asks one registry for one schema with a short
timeout and returns the parsed document or raises :class:`LookupFailed` with what went wrong,
fit for a bad event and for the ``lookupHistory`` of a Snowplow bad row. Nothing here holds a
lock; a :class:`Registry` is immutable and safe from any thread.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit

__all__ = ["LookupFailed", "Registry"]

#: Largest schema document read from a registry.
MAX_SCHEMA_BYTES = 1024 * 1024
_NO_PROXY_HOSTS = ("127.0.0.1", "localhost", "::1")


class LookupFailed(LookupError):
    """One registry could not give a schema. ``kind`` is the Iglu client's word for it:
    ``NotFound`` (the registry answered 404), ``RepoFailure`` (unreachable, timed out, a 5xx
    answer) or ``ClientFailure`` (any other answer, or a document that is not a JSON
    object). The message names the registry and the error."""

    def __init__(self, kind: Literal["NotFound", "RepoFailure", "ClientFailure"],
                 message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Registry:
    """One static Iglu registry at *url* (``http://`` or ``https://``, the root above
    ``/schemas``), asked with *timeout* seconds per request. Raises ``ValueError`` for a URL
    that is not HTTP(S)."""

    url: str
    timeout: float = 2.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"an Iglu registry must be an http:// or https:// URL, "
                             f"got {self.url!r}")
        if not self.timeout > 0:
            raise ValueError(f"the registry timeout must be positive, got {self.timeout!r}")
        object.__setattr__(self, "url", self.url.rstrip("/"))

    def schema_url(self, vendor: str, name: str, fmt: str, version: str) -> str:
        path = "/".join(quote(part, safe="") for part in (vendor, name, fmt, version))
        return f"{self.url}/schemas/{path}"

    def fetch(self, vendor: str, name: str, fmt: str, version: str,
              timeout: float | None = None) -> dict[str, Any]:
        """The schema document, or :class:`LookupFailed`. Blocks for at most about
        *timeout* (default: the registry's) seconds."""
        if any(part in (".", "..") for part in (vendor, name, fmt, version)):
            raise LookupFailed("ClientFailure", f"registry {self.url}: not asked for a path "
                                                f"with '.' or '..' parts")
        url = self.schema_url(vendor, name, fmt, version)
        wait = self.timeout if timeout is None else max(0.05, min(timeout, self.timeout))
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with _opener(url).open(request, timeout=wait) as response:
                body = response.read(MAX_SCHEMA_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                raise LookupFailed("NotFound", f"registry {self.url}: not found") from None
            kind: Literal["RepoFailure", "ClientFailure"] = (
                "RepoFailure" if exc.code >= 500 else "ClientFailure")
            raise LookupFailed(kind, f"registry {self.url}: answered {exc.code} "
                                     f"{exc.reason}") from None
        except TimeoutError:
            raise LookupFailed("RepoFailure", f"registry {self.url}: no answer within "
                                              f"{wait:.3g} s") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise LookupFailed("RepoFailure", f"registry {self.url}: no answer within "
                                                  f"{wait:.3g} s") from None
            raise LookupFailed("RepoFailure", f"registry {self.url}: cannot be reached "
                                              f"({reason})") from None
        if len(body) > MAX_SCHEMA_BYTES:
            raise LookupFailed("ClientFailure", f"registry {self.url}: the schema is larger "
                                                f"than {MAX_SCHEMA_BYTES} bytes")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise LookupFailed("ClientFailure", f"registry {self.url}: the schema is not "
                                                f"JSON ({str(exc)[:200]})") from None
        if not isinstance(document, dict):
            raise LookupFailed("ClientFailure", f"registry {self.url}: the schema is not a "
                                                f"JSON object")
        return document


def _opener(url: str) -> urllib.request.OpenerDirector:
    """The default opener, but never through an environment proxy for a loopback host."""
    if urlsplit(url).hostname in _NO_PROXY_HOSTS:
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()
