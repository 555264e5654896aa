"""A host's composition for ``movecar worker --factory worker_factory:build`` in tests:
its 110 desk is down when ``DESK_DOWN`` is set."""

from __future__ import annotations

import os

from movecar_adapters import connect
from movecar_core import MoveCar, PortError
from movecar_core.memory import InMemoryCommandCentre


class Desk(InMemoryCommandCentre):
    def notify(self, key: str, subject: str, message: str) -> None:
        if os.environ.get("DESK_DOWN"):
            raise PortError("the 110 desk's mail server refused the connection")
        super().notify(key, subject, message)


def build() -> MoveCar:
    return connect(command_centre=Desk(), upgrade=False)
