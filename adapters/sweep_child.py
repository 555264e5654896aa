"""Entry point of a sweep's helper process (see :mod:`movecar_adapters.sweep`).

A module of its own, not ``movecar_adapters.sweep`` itself: running an imported module as
``__main__`` would load it twice, and the points' classes must be the package's own.
"""

from __future__ import annotations

import sys

from movecar_adapters.sweep import serve

if __name__ == "__main__":
    replies = sys.stdout.buffer
    # Frames go to the real stdout; a stray print anywhere below must not corrupt them.
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, replies)
