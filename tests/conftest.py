"""Shared test settings: Hypothesis profiles (CI runs the same examples as developers)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "ci", parent=settings.get_profile("default"), derandomize=False, max_examples=150
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
