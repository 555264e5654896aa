"""An audit helper that answers every range with a result for another range, then with
something that is not a reply at all: the parent must trust neither."""

from __future__ import annotations

import sys

from movecar_adapters.sql.audit_cases import CaseAudit
from movecar_adapters.sql.child import frame, read_frame

if __name__ == "__main__":
    read_frame(sys.stdin.buffer)
    first = True
    while (job := read_frame(sys.stdin.buffer)) is not None:
        reply = ("ok", job[0] + 1000, CaseAudit(cases=10**6)) if first else "not a reply"
        first = False
        sys.stdout.buffer.write(frame(reply))
        sys.stdout.buffer.flush()
