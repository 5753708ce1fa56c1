"""PagePing lives in :mod:`.page_view`; this module keeps the reference's import path."""

from .page_view import PagePing

__all__ = ["PagePing"]
