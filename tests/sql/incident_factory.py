"""A host's composition for ``movecar worker --factory incident_factory:build`` in the
incident tests: its 110 desk appends each notice it takes to the JSON-lines file
``$INCIDENT_DESK`` (once per key, as a desk drops repeats), or refuses every notice
while ``DESK_DOWN`` is set."""

from __future__ import annotations

import json
import os
from pathlib import Path

from movecar_adapters import connect
from movecar_core import MoveCar, PortError


class FileDesk:
    def __init__(self, path: Path) -> None:
        self.path = path

    def notify(self, key: str, subject: str, message: str) -> None:
        if os.environ.get("DESK_DOWN"):
            raise PortError("the 110 desk's mail server refused the connection")
        seen = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        if any(json.loads(line)["key"] == key for line in seen):
            return
        with self.path.open("a", encoding="utf-8") as out:
            line = {"key": key, "subject": subject, "message": message}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


def build() -> MoveCar:
    return connect(command_centre=FileDesk(Path(os.environ["INCIDENT_DESK"])), upgrade=False)
