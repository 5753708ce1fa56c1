"""Subject: who and what environment an event is about (user, IP, platform, ...)."""

from __future__ import annotations

from .contracts import choice, dimension, positive_int
from .payload import as_text
from .typing import SUPPORTED_PLATFORMS, PayloadDict, SupportedPlatform

DEFAULT_PLATFORM = "pc"


def _check_text(value: object, name: str) -> None:
    """Text fields take a string, an int (sent as its digits: numeric user ids from code
    written for the reference keep working) or None (unset)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")


class Subject:
    """The user/device fields added to every event (``p``, ``uid``, ``ip``, ``ua``, ...).

    Differences from the reference tracker, on purpose:

    * Only the fields that were *set* on a subject are applied when it is used as an event
      subject: an event subject that sets ``user_id`` overrides ``uid`` and leaves the
      tracker subject's platform alone (the reference silently resets it to ``pc``).
    * ``standard_nv_pairs`` still includes the default platform ``pc`` for code that reads it.

    A Subject is a plain value object: not locked. Sharing one between threads is fine as
    long as nobody mutates it while others track with it.
    """

    __slots__ = ("_pairs", "_wire")

    def __init__(self) -> None:
        self._pairs: dict[str, str | int] = {}
        #: cache of :meth:`wire_pairs` (None after any change); built and replaced as a
        #: whole, so threads that track while another sets a field see the old or new one
        self._wire: tuple[dict[str, str], dict[str, str]] | None = None

    def _changed(self) -> None:
        self._wire = None

    def _cached_wire(self) -> tuple[dict[str, str], dict[str, str]]:
        """(:meth:`wire_pairs`, :meth:`explicit_wire_pairs`): one cached tuple, replaced
        by a new one after a setter ran (so its identity tells whether it is current)."""
        wire = self._wire
        if wire is None:
            wire = self._wire = self._build_wire()
        return wire

    def wire_pairs(self) -> dict[str, str]:
        """What this subject adds to an event, as sent: every set, non-empty field as a
        string, with the default platform. Cached until a setter runs; do not modify."""
        return self._cached_wire()[0]

    def explicit_wire_pairs(self) -> dict[str, str]:
        """:meth:`wire_pairs` without the default platform: what an event subject
        overrides. Cached like :meth:`wire_pairs`; do not modify."""
        return self._cached_wire()[1]

    def _build_wire(self) -> tuple[dict[str, str], dict[str, str]]:
        explicit = {k: v if type(v) is str else as_text(v)
                    for k, v in self._pairs.items() if v is not None and v != ""}
        full = explicit if "p" in self._pairs else {"p": DEFAULT_PLATFORM, **explicit}
        return full, explicit

    @property
    def standard_nv_pairs(self) -> PayloadDict:
        """The fields this subject adds, with the default platform filled in."""
        if "p" in self._pairs:
            return dict(self._pairs)
        return {"p": DEFAULT_PLATFORM, **self._pairs}

    @property
    def explicit_nv_pairs(self) -> dict[str, str | int]:
        """Only the fields that were set explicitly (what an event subject overrides); a
        copy."""
        return dict(self._pairs)

    def set_platform(self, value: SupportedPlatform) -> Subject:
        choice(value, SUPPORTED_PLATFORMS, "platform")
        self._pairs["p"] = value
        self._changed()
        return self

    def set_user_id(self, user_id: str) -> Subject:
        _check_text(user_id, "user_id")
        self._set_text("uid", user_id)
        return self

    def set_screen_resolution(self, width: int, height: int) -> Subject:
        dimension(width, "width")
        dimension(height, "height")
        self._pairs["res"] = f"{width}x{height}"
        self._changed()
        return self

    def set_viewport(self, width: int, height: int) -> Subject:
        dimension(width, "width")
        dimension(height, "height")
        self._pairs["vp"] = f"{width}x{height}"
        self._changed()
        return self

    def _set_text(self, key: str, value: str | int | None) -> None:
        # None unsets the field (the reference stores None, which is then not sent)
        if value is None:
            self._pairs.pop(key, None)
        else:
            self._pairs[key] = value if isinstance(value, str) else str(value)
        self._changed()

    def set_color_depth(self, depth: int) -> Subject:
        positive_int(depth, "depth")
        self._pairs["cd"] = depth
        self._changed()
        return self

    def set_timezone(self, timezone: str) -> Subject:
        _check_text(timezone, "timezone")
        self._set_text("tz", timezone)
        return self

    def set_lang(self, lang: str) -> Subject:
        _check_text(lang, "lang")
        self._set_text("lang", lang)
        return self

    def set_domain_user_id(self, duid: str) -> Subject:
        _check_text(duid, "duid")
        self._set_text("duid", duid)
        return self

    def set_domain_session_id(self, sid: str) -> Subject:
        _check_text(sid, "sid")
        self._set_text("sid", sid)
        return self

    def set_domain_session_index(self, vid: int) -> Subject:
        positive_int(vid, "vid")
        self._pairs["vid"] = vid
        self._changed()
        return self

    def set_ip_address(self, ip: str) -> Subject:
        _check_text(ip, "ip")
        self._set_text("ip", ip)
        return self

    def set_useragent(self, ua: str) -> Subject:
        _check_text(ua, "ua")
        self._set_text("ua", ua)
        return self

    def set_network_user_id(self, nuid: str) -> Subject:
        _check_text(nuid, "nuid")
        self._set_text("tnuid", nuid)
        return self

    def copy(self) -> Subject:
        """A new subject with the same explicitly set fields (changing one leaves the
        other as it was)."""
        clone = Subject()
        clone._pairs = dict(self._pairs)
        return clone

    def merged(self, override: Subject | None) -> Subject:
        """A new subject: this one's fields, overridden by those *override* set."""
        clone = self.copy()
        if override is not None:
            clone._pairs.update(override._pairs)
            clone._changed()
        return clone

    def combine_subject(self, subject: Subject | None) -> PayloadDict:
        """Fields of *subject* (the tracker's) overridden by what this subject set."""
        if subject is None:
            return self.standard_nv_pairs
        return {**subject.standard_nv_pairs, **self._pairs}

    def __repr__(self) -> str:
        return f"Subject({self._pairs!r})"
