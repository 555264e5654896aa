"""Entry point of the bulk writer process (``python -m adapters.sql.bulk_child``).

A module of its own, not ``adapters.sql.bulk`` itself: the package imports that one, and
running an already imported module as ``__main__`` would load it twice.
"""

from __future__ import annotations

import sys

from adapters.sql.bulk import serve

if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
