"""Shared test settings: Hypothesis profiles (CI runs the same examples as developers)."""

from __future__ import annotations

import contextlib
import os
import shutil
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
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A green run leaves nothing in the temp folder: its session folders (databases, the
    wheel) go too, and pytest's per-user folder when nothing else is in it. A failing run
    keeps its folders to debug."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return
    basetemp = Path(factory.getbasetemp())
    root = basetemp.parent
    if exitstatus == 0:
        shutil.rmtree(basetemp, ignore_errors=True)
    with contextlib.suppress(OSError):
        for leftover in root.glob("pytest-current"):
            if not leftover.exists():  # a link to the folder just removed
                leftover.unlink()
        if root.name.startswith("pytest-of-") and not any(root.iterdir()):
            root.rmdir()
