"""Event classes: build one, then pass it to :meth:`Tracker.track`."""

from .event import Event
from .page_view import PagePing, PageView
from .screen_view import ScreenView
from .self_describing import SelfDescribing
from .structured_event import StructuredEvent

__all__ = ["Event", "PagePing", "PageView", "ScreenView", "SelfDescribing", "StructuredEvent"]
