"""Free-threaded Python: importing the package where the GIL is off warns, clearly.

The lock-free paths rely on the GIL (``snowplow_threaded/free_threading.py``). On a
build with the GIL, ``sys._is_gil_enabled`` (3.13+) is replaced in a child interpreter
to stand in for one without it: every Python the suite runs on checks the import-time
warning that way. The last test runs a real free-threaded interpreter when
``SNOWPLOW_FREE_THREADED_PYTHON`` names one (``docs/testing.md`` says how to build it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from snowplow_threaded import free_threading
from snowplow_threaded.free_threading import GILDisabledWarning, gil_disabled

REPO = Path(__file__).resolve().parent.parent
FREE_THREADED = os.environ.get("SNOWPLOW_FREE_THREADED_PYTHON", "")

#: imports the package in a fresh interpreter and prints what it warned
IMPORT = """
import json, sys, warnings
{setup}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import snowplow_threaded
print(json.dumps({{
    "gil": sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True,
    "warnings": [[w.category.__name__, str(w.message), w.filename] for w in caught
                 if issubclass(w.category, snowplow_threaded.GILDisabledWarning)],
}}))
"""


def import_in_child(python: str, setup: str = "", **env: str) -> dict[str, Any]:
    proc = subprocess.run([python, "-c", IMPORT.format(setup=setup)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def test_gil_disabled_follows_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gil_disabled() is False  # the suite runs with the GIL (see the module doc)
    assert free_threading.warn_if_gil_disabled() is False
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    assert gil_disabled() is True
    with pytest.warns(GILDisabledWarning, match=r"PYTHON_GIL=1 or python -X gil=1"):
        assert free_threading.warn_if_gil_disabled() is True
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: True, raising=False)
    assert gil_disabled() is False


def test_importing_without_the_gil_warns_once_from_the_package() -> None:
    result = import_in_child(sys.executable, "sys._is_gil_enabled = lambda: False")
    assert len(result["warnings"]) == 1, result
    category, message, filename = result["warnings"][0]
    assert category == "GILDisabledWarning" and issubclass(GILDisabledWarning, RuntimeWarning)
    assert message.startswith("snowplow_threaded relies on the GIL") and "PYTHON_GIL=1" in message
    assert Path(filename) == REPO / "snowplow_threaded" / "__init__.py"


def test_importing_with_the_gil_does_not_warn() -> None:
    assert import_in_child(sys.executable) == {"gil": True, "warnings": []}


@pytest.mark.skipif(not FREE_THREADED, reason="SNOWPLOW_FREE_THREADED_PYTHON is not set")
def test_a_real_free_threaded_build_warns_unless_run_with_the_gil() -> None:
    without = import_in_child(FREE_THREADED, PYTHON_GIL="0")
    assert without["gil"] is False and len(without["warnings"]) == 1, without
    assert import_in_child(FREE_THREADED, PYTHON_GIL="1") == {"gil": True, "warnings": []}
