"""Rules the suite keeps about itself: a test whose tool is missing fails in CI."""

from __future__ import annotations

import pytest

from tests.helpers import require


def test_a_missing_tool_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI=true: \.ci/run must install it"):
        require(False, "gunicorn")
    require(True, "gunicorn")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception):
        require(False, "gunicorn")
