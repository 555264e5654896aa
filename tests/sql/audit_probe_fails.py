"""An audit helper whose every range fails (as a database error in the helper would)."""

from __future__ import annotations

import sys

from movecar_adapters.sql.child import frame, read_frame

if __name__ == "__main__":
    read_frame(sys.stdin.buffer)
    while (job := read_frame(sys.stdin.buffer)) is not None:
        sys.stdout.buffer.write(frame(("error", job[0], "OperationalError")))
        sys.stdout.buffer.flush()
