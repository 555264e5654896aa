"""A stand-in for the bulk writer child (``ProcessWriter.child_module`` in a test): started
exactly as the real child is, it reports how it was started instead of writing rows."""

from __future__ import annotations

import os
import sys

from movecar_adapters.sql.child import frame as _frame
from movecar_adapters.sql.child import read_frame as _read_frame

if __name__ == "__main__":
    (url, _options), _depth = _read_frame(sys.stdin.buffer)
    try:
        import planted_in_cwd  # noqa: F401 - must not be importable

        planted = True
    except ImportError:
        planted = False
    report = {
        "isolated": sys.flags.isolated,
        "environment": dict(os.environ),
        "path": list(sys.path),
        "cwd": os.getcwd(),
        "url": url,
        "planted": planted,
    }
    sys.stdout.buffer.write(_frame(("ok", report)))
    sys.stdout.buffer.flush()
