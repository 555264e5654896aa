"""Entry point of the bulk writer process (``python -m movecar_adapters.sql.bulk_child``).

A module of its own, not ``movecar_adapters.sql.bulk`` itself: the package imports that one, and
running an already imported module as ``__main__`` would load it twice.
"""

from __future__ import annotations

import sys

from movecar_adapters.sql.bulk import serve

if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
