"""The canonical (enriched) form of a good event, as a Snowplow pipeline with every
enrichment switched off would write it: the columns of the atomic events table, derived from
the tracker-protocol fields and the request. Columns that need an enrichment (geo, user
agent parsing, referer and campaign attribution, currency conversion) are ``None``.

Shaped as Snowplow Micro shows it (the Scala Analytics SDK's ``Event``): timestamps as Java's
``Instant`` prints them (``2024-05-01T12:00:00.123Z``, no fraction when it is zero), empty
``contexts``/``derived_contexts`` as ``{}``, ``unstruct_event`` ``None`` unless ``e=ue``.
:func:`shredded` gives the flat form ``POST /micro/events`` lists (``contexts_VENDOR_NAME_1``
and ``unstruct_event_VENDOR_NAME_1`` columns); :func:`incomplete_event` the event Micro keeps
for an event that failed.

Pure functions; safe from any thread. Only called for good events (whose fields were
validated), so conversions here do not fail on them; anything odd still gives ``None``.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .._version import __version__
from .badrows import failure_entities
from .protocol import EVENT_TYPES, decode_field

__all__ = ["COLUMNS", "canonical_event", "event_schema", "incomplete_event",
           "instant_text", "iso_timestamp", "shredded"]

VERSION_TAG = f"snowplow-threaded-collector-{__version__}"
_SP = "iglu:com.snowplowanalytics.snowplow/"
_UNSTRUCT_WRAPPER = _SP + "unstruct_event/jsonschema/1-0-0"
_CONTEXTS_WRAPPER = _SP + "contexts/jsonschema/1-0-0"
_EVENT_SCHEMAS = {
    "pv": ("com.snowplowanalytics.snowplow", "page_view"),
    "pp": ("com.snowplowanalytics.snowplow", "page_ping"),
    "se": ("com.google.analytics", "event"),
    "ev": ("com.google.analytics", "event"),
    "tr": ("com.snowplowanalytics.snowplow", "transaction"),
    "ti": ("com.snowplowanalytics.snowplow", "transaction_item"),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: Every column of the canonical event, in the atomic table's order.
COLUMNS = (
    "app_id", "platform", "etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "event",
    "event_id", "txn_id", "name_tracker", "v_tracker", "v_collector", "v_etl", "user_id",
    "user_ipaddress", "user_fingerprint", "domain_userid", "domain_sessionidx",
    "network_userid", "geo_country", "geo_region", "geo_city", "geo_zipcode", "geo_latitude",
    "geo_longitude", "geo_region_name", "ip_isp", "ip_organization", "ip_domain",
    "ip_netspeed", "page_url", "page_title", "page_referrer", "page_urlscheme", "page_urlhost",
    "page_urlport", "page_urlpath", "page_urlquery", "page_urlfragment", "refr_urlscheme",
    "refr_urlhost", "refr_urlport", "refr_urlpath", "refr_urlquery", "refr_urlfragment",
    "refr_medium", "refr_source", "refr_term", "mkt_medium", "mkt_source", "mkt_term",
    "mkt_content", "mkt_campaign", "contexts", "se_category", "se_action", "se_label",
    "se_property", "se_value", "unstruct_event", "tr_orderid", "tr_affiliation", "tr_total",
    "tr_tax", "tr_shipping", "tr_city", "tr_state", "tr_country", "ti_orderid", "ti_sku",
    "ti_name", "ti_category", "ti_price", "ti_quantity", "pp_xoffset_min", "pp_xoffset_max",
    "pp_yoffset_min", "pp_yoffset_max", "useragent", "br_name", "br_family", "br_version",
    "br_type", "br_renderengine", "br_lang", "br_features_pdf", "br_features_flash",
    "br_features_java", "br_features_director", "br_features_quicktime",
    "br_features_realplayer", "br_features_windowsmedia", "br_features_gears",
    "br_features_silverlight", "br_cookies", "br_colordepth", "br_viewwidth", "br_viewheight",
    "os_name", "os_family", "os_manufacturer", "os_timezone", "dvce_type", "dvce_ismobile",
    "dvce_screenwidth", "dvce_screenheight", "doc_charset", "doc_width", "doc_height",
    "tr_currency", "tr_total_base", "tr_tax_base", "tr_shipping_base", "ti_currency",
    "ti_price_base", "base_currency", "geo_timezone", "mkt_clickid", "mkt_network", "etl_tags",
    "dvce_sent_tstamp", "refr_domain_userid", "refr_dvce_tstamp", "derived_contexts",
    "domain_sessionid", "derived_tstamp", "event_vendor", "event_name", "event_format",
    "event_version", "event_fingerprint", "true_tstamp",
)

_COPIED = {
    "aid": "app_id", "p": "platform", "eid": "event_id", "tna": "name_tracker",
    "tv": "v_tracker", "uid": "user_id", "fp": "user_fingerprint", "duid": "domain_userid",
    "url": "page_url", "page": "page_title", "refr": "page_referrer", "se_ca": "se_category",
    "se_ac": "se_action", "se_la": "se_label", "se_pr": "se_property", "tr_id": "tr_orderid",
    "tr_af": "tr_affiliation", "tr_ci": "tr_city", "tr_st": "tr_state", "tr_co": "tr_country",
    "tr_cu": "tr_currency", "ti_id": "ti_orderid", "ti_sk": "ti_sku", "ti_ca": "ti_category",
    "ti_cu": "ti_currency", "lang": "br_lang", "tz": "os_timezone", "cs": "doc_charset",
    "cd": "br_colordepth", "sid": "domain_sessionid", "ti_nm": "ti_name", "ti_na": "ti_name",
}
_INTEGERS = {"tid": "txn_id", "vid": "domain_sessionidx", "ti_qu": "ti_quantity",
             "pp_mix": "pp_xoffset_min", "pp_max": "pp_xoffset_max",
             "pp_miy": "pp_yoffset_min", "pp_may": "pp_yoffset_max"}
_FLOATS = {"se_va": "se_value", "tr_tt": "tr_total", "tr_tx": "tr_tax",
           "tr_sh": "tr_shipping", "ti_pr": "ti_price"}
_TIMESTAMPS = {"dtm": "dvce_created_tstamp", "stm": "dvce_sent_tstamp", "ttm": "true_tstamp"}
_FEATURES = {"f_pdf": "pdf", "f_fla": "flash", "f_java": "java", "f_dir": "director",
             "f_qt": "quicktime", "f_realp": "realplayer", "f_wma": "windowsmedia",
             "f_gears": "gears", "f_ag": "silverlight"}
_DIMENSIONS = {"res": ("dvce_screenwidth", "dvce_screenheight"),
               "vp": ("br_viewwidth", "br_viewheight"), "ds": ("doc_width", "doc_height")}


def iso_timestamp(seconds: float) -> str:
    """``2024-05-01T12:00:00.123Z`` (UTC, milliseconds) for a POSIX time."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def instant_text(seconds: float) -> str:
    """A POSIX time as Java's ``Instant.toString`` prints it (milliseconds, no fraction when
    they are zero): how Micro shows the canonical event's timestamps."""
    text = iso_timestamp(seconds)
    return text[:-5] + "Z" if text.endswith(".000Z") else text


def _iso_or_none(seconds: float) -> str | None:
    try:
        return instant_text(seconds)
    except (OverflowError, ValueError, OSError):  # beyond the years datetime handles
        return None


def event_schema(e: str | None, unstruct_schema: str | None) -> str | None:
    """Micro's ``schema`` of an event: its event vendor/name/format/version as an Iglu URI
    (``iglu:com.google.analytics/event/jsonschema/1-0-0`` for ``e=se``)."""
    if e in _EVENT_SCHEMAS:
        vendor, name = _EVENT_SCHEMAS[e]
        return f"iglu:{vendor}/{name}/jsonschema/1-0-0"
    return unstruct_schema if e == "ue" else None


def _millis(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _number(text: str, kind: type[int] | type[float]) -> int | float | None:
    try:
        return kind(text)
    except ValueError:
        return None


def _url_parts(url: str | None, prefix: str, out: dict[str, Any]) -> None:
    if not url:
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return
    out[prefix + "scheme"] = parts.scheme or None
    out[prefix + "host"] = parts.hostname
    out[prefix + "port"] = port if port is not None else _DEFAULT_PORTS.get(parts.scheme)
    out[prefix + "path"] = parts.path or None
    out[prefix + "query"] = parts.query or None
    out[prefix + "fragment"] = parts.fragment or None


def canonical_event(params: dict[str, Any], received_at: float, ip: str | None,
                    useragent: str | None, network_user_id: str | None = None
                    ) -> dict[str, Any]:
    """The canonical event of a good event's *params*, received at *received_at* (POSIX
    seconds) from *ip* with header *useragent* and the collector's *network_user_id* (the
    ``ip``/``ua``/``tnuid``/``nuid`` fields win)."""
    out: dict[str, Any] = dict.fromkeys(COLUMNS)
    for source, column in _COPIED.items():
        if source in params:
            out[column] = params[source]
    for source, column in _INTEGERS.items():
        if source in params:
            out[column] = _number(params[source], int)
    for source, column in _FLOATS.items():
        if source in params:
            out[column] = _number(params[source], float)
    millis: dict[str, int | None] = {}
    for source, column in _TIMESTAMPS.items():
        if source in params:
            millis[source] = value = _millis(params[source])
            out[column] = _iso_or_none(value / 1000) if value is not None else None
    for source, name in _FEATURES.items():
        if source in params:
            out["br_features_" + name] = params[source] == "1"
    for source, (width, height) in _DIMENSIONS.items():
        if source in params:
            w, _, h = params[source].partition("x")
            out[width], out[height] = _number(w, int), _number(h, int)
    if "cookie" in params:
        out["br_cookies"] = params["cookie"] == "1"
    e = params.get("e")
    out["event"] = EVENT_TYPES.get(e or "")
    out["event_id"] = out["event_id"] or str(uuid.uuid4())
    out["collector_tstamp"] = out["etl_tstamp"] = instant_text(received_at)
    out["v_collector"] = out["v_etl"] = VERSION_TAG
    out["user_ipaddress"] = params.get("ip") or ip
    out["useragent"] = params.get("ua") or useragent
    out["network_userid"] = params.get("tnuid") or params.get("nuid") or network_user_id
    _url_parts(params.get("url"), "page_url", out)
    _url_parts(params.get("refr"), "refr_url", out)
    _derived_tstamp(out, millis, received_at)
    contexts = decode_field(params, "co", "cx")
    entities = contexts.get("data") if isinstance(contexts, dict) else None
    out["contexts"] = ({"schema": _CONTEXTS_WRAPPER, "data": entities}
                       if isinstance(entities, list) and entities else {})
    out["derived_contexts"] = {}
    inner: Any = None
    if e == "ue":
        envelope = decode_field(params, "ue_pr", "ue_px")
        inner = envelope.get("data") if isinstance(envelope, dict) else None
        out["unstruct_event"] = ({"schema": _UNSTRUCT_WRAPPER, "data": inner}
                                 if isinstance(inner, dict) else None)
    _event_schema(out, e, inner)
    return out


def incomplete_event(params: dict[str, Any], failed: frozenset[str],
                     messages: Sequence[dict[str, Any]], received_at: float, ip: str | None,
                     useragent: str | None, network_user_id: str | None = None
                     ) -> dict[str, Any]:
    """The canonical event Micro keeps for an event that failed (listed by ``POST
    /micro/events``): built from its string fields but the *failed* ones, with one
    ``failure`` entity per bad-row message in ``derived_contexts``, as Enrich does."""
    usable = {k: v for k, v in params.items() if isinstance(v, str) and k not in failed}
    out = canonical_event(usable, received_at, ip, useragent, network_user_id)
    entities = failure_entities(messages, out["etl_tstamp"])
    out["derived_contexts"] = {"schema": _CONTEXTS_WRAPPER, "data": entities}
    return out


_SNAKE_SEPARATORS = re.compile(r"[.\-]")
_CAMEL = re.compile(r"([^A-Z_])([A-Z])")


def _column(prefix: str, uri: Any) -> str | None:
    """``contexts_com_acme_my_entity_1`` for ``iglu:com.acme/myEntity/jsonschema/1-0-0``, as
    the Analytics SDK names shredded columns."""
    if not isinstance(uri, str):
        return None
    parts = uri.removeprefix("iglu:").split("/")
    if len(parts) != 4:
        return None
    vendor, name, _, version = parts
    model = version.split("-")[0]
    vendor = _SNAKE_SEPARATORS.sub("_", vendor).lower()
    name = _CAMEL.sub(r"\1_\2", _SNAKE_SEPARATORS.sub("_", name)).lower()
    return f"{prefix}{vendor}_{name}_{model}"


def shredded(event: dict[str, Any]) -> dict[str, Any]:
    """*event* as Micro's ``POST /micro/events`` lists it (the Analytics SDK's lossy JSON):
    the atomic columns, each context entity's data (with its ``_schema_version``) in a list
    under ``contexts_VENDOR_NAME_MODEL`` and the self-describing event's data under
    ``unstruct_event_VENDOR_NAME_MODEL``."""
    out = {k: v for k, v in event.items()
           if k not in ("contexts", "derived_contexts", "unstruct_event")}
    for field in ("contexts", "derived_contexts"):
        block = event.get(field) or {}
        for entity in block.get("data", ()) if isinstance(block, dict) else ():
            if not isinstance(entity, dict):
                continue
            column = _column("contexts_", entity.get("schema"))
            data = entity.get("data")
            if column is None or not isinstance(data, dict):
                continue
            version = str(entity["schema"]).rsplit("/", 1)[-1]
            out.setdefault(column, []).append({**data, "_schema_version": version})
    unstruct = event.get("unstruct_event")
    inner = unstruct.get("data") if isinstance(unstruct, dict) else None
    if isinstance(inner, dict):
        column = _column("unstruct_event_", inner.get("schema"))
        if column is not None:
            out[column] = inner.get("data")
    return out


def _derived_tstamp(out: dict[str, Any], millis: dict[str, int | None],
                    received_at: float) -> None:
    created, sent, true = millis.get("dtm"), millis.get("stm"), millis.get("ttm")
    if true is not None:
        out["derived_tstamp"] = out["true_tstamp"]
    elif created is not None and sent is not None and created < sent:  # as Enrich does
        out["derived_tstamp"] = _iso_or_none(received_at - (sent - created) / 1000)
    else:
        out["derived_tstamp"] = out["collector_tstamp"]


def _event_schema(out: dict[str, Any], e: str | None, inner: Any) -> None:
    if e in _EVENT_SCHEMAS:
        vendor, name = _EVENT_SCHEMAS[e]
        out.update(event_vendor=vendor, event_name=name, event_format="jsonschema",
                   event_version="1-0-0")
    elif isinstance(inner, dict) and isinstance(inner.get("schema"), str):
        uri = inner["schema"].removeprefix("iglu:")
        parts = uri.split("/")
        if len(parts) == 4:
            out.update(event_vendor=parts[0], event_name=parts[1], event_format=parts[2],
                       event_version=parts[3])
