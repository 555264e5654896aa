"""Shared test settings: Hypothesis profiles (CI runs the same examples as developers)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci", parent=settings.get_profile("default"), derandomize=False, max_examples=150
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Remove pytest's own per-user temp folder when the run left nothing in it."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    root = Path(factory.getbasetemp()).parent
    with contextlib.suppress(OSError):
        for leftover in root.glob("pytest-current"):
            leftover.unlink()
        if root.name.startswith("pytest-of-") and not any(root.iterdir()):
            root.rmdir()
