"""An audit helper that ends as soon as it has read its opening frame (a crash)."""

from __future__ import annotations

import sys

from movecar_adapters.sql.child import read_frame

if __name__ == "__main__":
    read_frame(sys.stdin.buffer)
    sys.exit(7)
