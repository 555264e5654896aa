"""Entry point of an audit helper process (``python -m movecar_adapters.sql.audit_child``,
see :mod:`movecar_adapters.sql.audit_pool`).

A module of its own, not ``movecar_adapters.sql.audit_pool`` itself: the package imports
that one, and running an already imported module as ``__main__`` would load it twice.
"""

from __future__ import annotations

import sys

from movecar_adapters.sql.audit_pool import serve

if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
