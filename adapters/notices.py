"""The 110 desk's notices as log lines: a :class:`~movecar_core.ports.CommandCentre` that
writes each notice as one line, to a file or to a logger.

For a deployment whose 110 desk is not reached by mail (the notices are read off the log,
or shipped by the host's log collector), and as a record beside the mail. Each line
carries the notice's key, so a reader drops a repeat (a worker that crashed after writing
writes the same key again). Phone numbers are masked (:func:`~movecar_core.errors.redact`)
and every line is one line, whatever the notice held: a newline in a note cannot forge a
second notice.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from movecar_adapters.clock import SystemClock
from movecar_core.errors import InvalidInput, PortError, excerpt, redact
from movecar_core.mail import check_key
from movecar_core.ports import Clock, CommandCentre

#: The logger notices go to when no file is named.
LOGGER = "movecar.notices"
#: Longest line written: a notice is a few sentences.
MAX_LINE = 4000


def _one_line(text: str) -> str:
    return redact(" ".join(text.split()))


def notice_line(at: str, key: str, subject: str, message: str) -> str:
    """The one line a notice becomes: time, key, subject, message (phones masked)."""
    line = f"{at} 110-notice key={key} subject={_one_line(subject)} | {_one_line(message)}"
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…"


class LogCommandCentre:
    """Writes each notice to the 110 desk as one line: appended to ``path`` (one write per
    line, so lines of concurrent writers never interleave), or to ``logger`` (default the
    ``movecar.notices`` logger at WARNING: a notice to 110 is never routine)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        logger: logging.Logger | None = None,
        clock: Clock | None = None,
    ) -> None:
        if path is not None and logger is not None:
            raise InvalidInput("LogCommandCentre: give a path or a logger, not both")
        self.path = None if path is None else Path(path)
        self.logger = logger or logging.getLogger(LOGGER)
        self.clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"LogCommandCentre({str(self.path) if self.path else self.logger.name!r})"

    def notify(self, key: str, subject: str, message: str) -> None:
        for name, value in (("subject", subject), ("message", message)):
            if not isinstance(value, str):
                raise InvalidInput(f"{name}={excerpt(value)}: must be text")
        line = notice_line(self.clock.now().isoformat(), check_key(key), subject, message)
        if self.path is None:
            self.logger.warning("%s", line)
            return
        data = (line + "\n").encode("utf-8", "backslashreplace")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                written = os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise PortError(
                f"notice log {str(self.path)[:200]}: cannot write it ({exc.strerror})"
            ) from None
        if written != len(data):
            raise PortError(f"notice log {str(self.path)[:200]}: the disk took part of a line")


if TYPE_CHECKING:

    def _implements_the_port(log: LogCommandCentre) -> CommandCentre:
        return log  # mypy checks that the adapter is a CommandCentre


__all__ = ["LogCommandCentre", "notice_line"]
