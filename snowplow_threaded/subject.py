"""Subject: who and what environment an event is about (user, IP, platform, ...)."""

from __future__ import annotations

from .contracts import one_of, positive_int
from .typing import SUPPORTED_PLATFORMS, PayloadDict, SupportedPlatform

DEFAULT_PLATFORM = "pc"


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

    __slots__ = ("_pairs",)

    def __init__(self) -> None:
        self._pairs: dict[str, str | int] = {}

    @property
    def standard_nv_pairs(self) -> PayloadDict:
        """The fields this subject adds, with the default platform filled in."""
        if "p" in self._pairs:
            return dict(self._pairs)
        return {"p": DEFAULT_PLATFORM, **self._pairs}

    @property
    def explicit_nv_pairs(self) -> dict[str, str | int]:
        """Only the fields that were set explicitly (what an event subject overrides)."""
        return self._pairs

    def set_platform(self, value: SupportedPlatform) -> Subject:
        one_of(value, SUPPORTED_PLATFORMS, "platform")
        self._pairs["p"] = value
        return self

    def set_user_id(self, user_id: str) -> Subject:
        self._pairs["uid"] = user_id
        return self

    def set_screen_resolution(self, width: int, height: int) -> Subject:
        positive_int(width, "width")
        positive_int(height, "height")
        self._pairs["res"] = f"{width}x{height}"
        return self

    def set_viewport(self, width: int, height: int) -> Subject:
        positive_int(width, "width")
        positive_int(height, "height")
        self._pairs["vp"] = f"{width}x{height}"
        return self

    def set_color_depth(self, depth: int) -> Subject:
        self._pairs["cd"] = depth
        return self

    def set_timezone(self, timezone: str) -> Subject:
        self._pairs["tz"] = timezone
        return self

    def set_lang(self, lang: str) -> Subject:
        self._pairs["lang"] = lang
        return self

    def set_domain_user_id(self, duid: str) -> Subject:
        self._pairs["duid"] = duid
        return self

    def set_domain_session_id(self, sid: str) -> Subject:
        self._pairs["sid"] = sid
        return self

    def set_domain_session_index(self, vid: int) -> Subject:
        self._pairs["vid"] = vid
        return self

    def set_ip_address(self, ip: str) -> Subject:
        self._pairs["ip"] = ip
        return self

    def set_useragent(self, ua: str) -> Subject:
        self._pairs["ua"] = ua
        return self

    def set_network_user_id(self, nuid: str) -> Subject:
        self._pairs["tnuid"] = nuid
        return self

    def combine_subject(self, subject: Subject | None) -> PayloadDict:
        """Fields of *subject* (the tracker's) overridden by what this subject set."""
        if subject is None:
            return self.standard_nv_pairs
        return {**subject.standard_nv_pairs, **self._pairs}

    def __repr__(self) -> str:
        return f"Subject({self._pairs!r})"
