"""The check made at import: this package's lock-free paths rely on the GIL.

A few hot paths take no lock because the GIL makes the one operation each does atomic
(``docs/design.md``, *Free-threaded Python*, lists them): the event store's append and
its rejection count, the cached process id, a tracker's merged subject fields. A
free-threaded build (CPython 3.13t and later) that runs without the GIL gives no such
guarantee, and this package is neither made nor tested safe that way, so importing it
there warns with :class:`GILDisabledWarning`. Such a build run with the GIL
(``PYTHON_GIL=1`` or ``-X gil=1``) is the supported way to use it there, and does not
warn.

Nothing here starts a thread or takes a lock.
"""

from __future__ import annotations

import sys
import warnings

MESSAGE = (
    "snowplow_threaded relies on the GIL, and this free-threaded Python runs without it: "
    "its lock-free paths (the event buffer's append and counts, the cached process id) "
    "are neither made nor tested safe without the GIL. Run this build with the GIL: "
    "PYTHON_GIL=1 or python -X gil=1 (see docs/design.md, 'Free-threaded Python')."
)


class GILDisabledWarning(RuntimeWarning):
    """Imported by a free-threaded Python that runs without the GIL (see the module)."""


def gil_disabled() -> bool:
    """True when this interpreter runs Python code without the GIL (a free-threaded
    build, 3.13t and later, without ``PYTHON_GIL=1``); False on every other build."""
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)  # 3.13+
    return is_gil_enabled is not None and not is_gil_enabled()


def warn_if_gil_disabled() -> bool:
    """Warn (:class:`GILDisabledWarning`) if :func:`gil_disabled`; return whether it
    did. Called once, when the package is imported."""
    if not gil_disabled():
        return False
    warnings.warn(MESSAGE, GILDisabledWarning, stacklevel=2)
    return True
