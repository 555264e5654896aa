"""A stand-in for the sweep's helper (``_Helpers.child_module`` in a test): started exactly
as the real one is, it runs points as the real one does but dies on seed 2, as a helper
killed by the system would (no reply, no message)."""

from __future__ import annotations

import os
import sys
from typing import Any

from movecar_adapters.sweep import run_point, serve


def _point(scenario: Any, seed: int, store: str) -> dict[str, Any]:
    if seed == 2:
        os._exit(9)
    return run_point(scenario, seed, store)


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer, _point)
