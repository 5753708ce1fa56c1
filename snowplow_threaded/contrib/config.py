"""Settings of the web integrations: parsing, checking, and building the tracker.

The Flask extension reads ``app.config["SNOWPLOW_<KEY>"]``, the Django app reads
``settings.SNOWPLOW["<key>"]``; both are the same keys (:data:`KEYS`) parsed here into one
:class:`IntegrationConfig`. Every problem is collected (not just the first) as a
:class:`Problem` with a stable code, so the Django system check can report them all with
ids ``snowplow_threaded.E00x``:

======  ===========================================================================
E001    the settings are missing or not a mapping
E002    unknown key
E003    ``endpoint`` missing or not a valid collector endpoint
E004    ``emitter`` is not a mapping of valid :class:`EmitterConfiguration` settings
E005    any other key has a bad value
======  ===========================================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from ..disk.arguments import check_arguments
from ..disk.store import DiskEventStore
from ..emitter_configuration import EmitterConfiguration
from ..emitters import Emitter
from ..endpoint import collector_uri
from ..settings import NAMES as EMITTER_SETTINGS
from ..subject import Subject
from ..tracker import Tracker
from ..typing import SUPPORTED_PLATFORMS, Method, SupportedPlatform
from . import schemas
from .web import TrustedProxies

RequestEvents = Literal["off", "page_view", "request"]
REQUEST_EVENTS: tuple[RequestEvents, ...] = ("off", "page_view", "request")

#: Every accepted key (lower case; Flask spells them ``SNOWPLOW_<UPPER>``).
KEYS: tuple[str, ...] = (
    "endpoint", "namespace", "app_id", "method", "platform", "encode_base64", "emitter",
    "trusted_proxies", "request_events", "ignore_paths", "schema_vendor", "disk_buffer",
)

E_MISSING = "E001"
E_UNKNOWN_KEY = "E002"
E_ENDPOINT = "E003"
E_EMITTER = "E004"
E_VALUE = "E005"


@dataclass(frozen=True)
class Problem:
    """One configuration problem: a code (``E001``...), the setting's name as the user
    spells it, and a message."""

    code: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message} [snowplow_threaded.{self.code}]"


class ConfigError(ValueError):
    """Bad integration settings; :attr:`problems` lists every one found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("invalid Snowplow settings:\n  " + "\n  ".join(map(str, problems)))


@dataclass(frozen=True, eq=False)
class IntegrationConfig:
    """Parsed settings. ``emitter`` holds every emitter setting (checked);
    ``ignore_paths`` are path prefixes that get no automatic event."""

    endpoint: str  # "" when a tracker was supplied instead
    namespace: str
    app_id: str | None = None
    method: Method = "post"
    platform: SupportedPlatform = "srv"
    encode_base64: bool = True
    emitter: EmitterConfiguration = field(default_factory=EmitterConfiguration)
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    request_events: RequestEvents = "off"
    ignore_paths: tuple[str, ...] = ()
    schema_vendor: str = schemas.DEFAULT_VENDOR
    #: ``DiskEventStore`` arguments (``directory`` and any keyword), or None: in memory
    disk_buffer: dict[str, Any] | None = None

    def build_tracker(self) -> Tracker:
        """A new :class:`Tracker` with its own :class:`Emitter` (not registered with
        :class:`~snowplow_threaded.Snowplow`), platform :attr:`platform` as its subject.
        No thread starts until the first event (unless ``disk_buffer`` holds events of
        a process that is gone: see ``DiskEventStore``)."""
        kwargs = self.emitter.as_kwargs()
        if self.disk_buffer is not None:
            kwargs["event_store"] = DiskEventStore(**self.disk_buffer)
        emitter = Emitter(self.endpoint, method=self.method, **kwargs)
        return Tracker(self.namespace, emitter, subject=Subject().set_platform(self.platform),
                       app_id=self.app_id, encode_base64=self.encode_base64)


def parse_config(
    settings: Mapping[str, Any] | None,
    *,
    default_namespace: str,
    spell: Callable[[str], str] = str,
    require_endpoint: bool = True,
) -> IntegrationConfig:
    """Parse *settings* (lower-case keys of :data:`KEYS`) into an :class:`IntegrationConfig`.

    *spell* turns a key into the name the user wrote (for messages; ``""`` names the
    settings as a whole). With ``require_endpoint=False`` (a tracker is supplied) the
    endpoint may be left out. Raises :class:`ConfigError` listing every problem.
    """
    if settings is None or not isinstance(settings, Mapping):
        got = "missing" if settings is None else f"a {type(settings).__name__}"
        raise ConfigError([Problem(E_MISSING, spell(""),
                                   f"must be a mapping of settings, got {got}")])
    problems: list[Problem] = []
    values: dict[str, Any] = {}

    def bad(code: str, key: str, message: str) -> None:
        problems.append(Problem(code, spell(key), message))

    for key in settings:
        if key not in KEYS:
            bad(E_UNKNOWN_KEY, str(key), f"unknown setting; known: {', '.join(KEYS)}")

    method = settings.get("method", "post")
    if method not in ("get", "post"):
        bad(E_VALUE, "method", f"must be 'get' or 'post', got {method!r}")
        method = "post"
    values["method"] = method

    endpoint = settings.get("endpoint")
    if endpoint is None or endpoint == "":
        if require_endpoint:
            bad(E_ENDPOINT, "endpoint", "the collector endpoint is required")
        values["endpoint"] = ""
    else:
        try:
            collector_uri(endpoint, method=method)
            values["endpoint"] = endpoint
        except (TypeError, ValueError) as exc:
            bad(E_ENDPOINT, "endpoint", str(exc))

    namespace = settings.get("namespace", default_namespace)
    if type(namespace) is not str or not namespace:
        bad(E_VALUE, "namespace", f"must be a non-empty string, got {namespace!r}")
    values["namespace"] = namespace

    app_id = settings.get("app_id")
    if app_id is not None and not isinstance(app_id, str):
        bad(E_VALUE, "app_id", f"must be a string or None, got {app_id!r}")
    values["app_id"] = app_id

    platform = settings.get("platform", "srv")
    if platform not in SUPPORTED_PLATFORMS:
        bad(E_VALUE, "platform", f"must be one of {sorted(SUPPORTED_PLATFORMS)}, got {platform!r}")
    values["platform"] = platform

    encode_base64 = settings.get("encode_base64", True)
    if not isinstance(encode_base64, bool):
        bad(E_VALUE, "encode_base64", f"must be True or False, got {encode_base64!r}")
    values["encode_base64"] = encode_base64

    values["emitter"] = _emitter(settings.get("emitter"), lambda m: bad(E_EMITTER, "emitter", m))

    try:
        values["trusted_proxies"] = TrustedProxies.parse(settings.get("trusted_proxies"))
    except (TypeError, ValueError) as exc:
        bad(E_VALUE, "trusted_proxies", str(exc))

    request_events = settings.get("request_events", "off")
    if request_events is None or request_events is False:
        request_events = "off"
    if request_events not in REQUEST_EVENTS:
        bad(E_VALUE, "request_events",
            f"must be one of {', '.join(map(repr, REQUEST_EVENTS))}, got {request_events!r}")
    values["request_events"] = request_events

    ignore = settings.get("ignore_paths", ())
    if isinstance(ignore, str):
        ignore = (ignore,)
    if not isinstance(ignore, (list, tuple, set, frozenset)) or not all(
        isinstance(p, str) and p.startswith("/") for p in ignore
    ):
        bad(E_VALUE, "ignore_paths", f"must be a list of path prefixes ('/health'), got {ignore!r}")
    else:
        values["ignore_paths"] = tuple(ignore)

    vendor = settings.get("schema_vendor", schemas.DEFAULT_VENDOR)
    try:
        values["schema_vendor"] = schemas.check_vendor(vendor)
    except (TypeError, ValueError) as exc:
        bad(E_VALUE, "schema_vendor", str(exc))

    disk = _disk_buffer(settings.get("disk_buffer"), lambda m: bad(E_VALUE, "disk_buffer", m))
    if disk is not None:
        if values["emitter"].event_store is not None:
            bad(E_VALUE, "disk_buffer", "cannot be set together with emitter's event_store")
        values["disk_buffer"] = disk

    if problems:
        raise ConfigError(problems)
    return IntegrationConfig(**values)


def _disk_buffer(value: object, bad: Callable[[str], None]) -> dict[str, Any] | None:
    """``DiskEventStore`` arguments from a directory or a mapping with ``directory``;
    checked here (nothing is created until the tracker is built)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        value = {"directory": os.fspath(value)}
    if not isinstance(value, Mapping) or not isinstance(value.get("directory"),
                                                        (str, os.PathLike)):
        bad("must be a directory, or a dict of DiskEventStore arguments with 'directory', "
            f"got {value!r}")
        return None
    arguments = dict(cast("Mapping[str, Any]", value))
    try:
        check_arguments(**arguments)
    except (TypeError, ValueError) as exc:
        bad(str(exc))
        return None
    return arguments


def _emitter(value: object, bad: Callable[[str], None]) -> EmitterConfiguration:
    """An :class:`EmitterConfiguration` from a mapping of its settings (or one itself)."""
    if value is None:
        return EmitterConfiguration()
    if isinstance(value, EmitterConfiguration):
        return value
    if not isinstance(value, Mapping):
        bad(f"must be a dict of emitter settings, got {type(value).__name__}")
        return EmitterConfiguration()
    settings = cast("Mapping[str, Any]", value)
    unknown = [k for k in settings if k not in EMITTER_SETTINGS]
    for key in unknown:
        bad(f"unknown emitter setting {key!r}; known: {', '.join(EMITTER_SETTINGS)}")
    config = EmitterConfiguration()
    for key, setting in settings.items():
        if key in unknown:
            continue
        try:
            setattr(config, key, setting)
        except (TypeError, ValueError) as exc:
            bad(str(exc))
    return config
