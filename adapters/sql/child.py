"""A helper process of the SQL store: started isolated, spoken to in frames over its pipes.

The bulk writer (:mod:`movecar_adapters.sql.bulk`) and the audit's case checkers
(:mod:`movecar_adapters.sql.audit_pool`) each run part of their work in processes beside
the caller's, so that it uses a second core. They start the same way:

* ``python -I -c BOOT <module>`` (not ``multiprocessing``, so a host script needs no
  ``if __name__ == "__main__"`` guard). ``-I`` ignores every ``PYTHON*`` variable and user
  site-packages and keeps the current directory off ``sys.path``, and the environment
  holds only what a database client needs (:func:`child_environment`: no ``MOVECAR_KEYS``,
  no database password). Secrets the child needs (the database URL with its password, the
  audit's keys) reach it over the pipe, never through its command line or environment.
* The first thing on its stdin is the import path (JSON, read by :data:`BOOT` before
  anything is imported: this process's ``sys.path`` without the current directory, see
  :func:`child_path`); then length-prefixed pickle frames both ways, and only between
  parent and child (a pickle from anyone else would run their code).
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
from typing import IO, Any

import sqlalchemy as sa

from movecar_adapters.sql.errors import StorageError

_LENGTH = 8  # bytes of the big-endian frame length

#: The child's first code: reads the import path from the pipe, then runs the module named
#: by its argument as ``__main__``. Nothing but the standard library is imported before.
BOOT = (
    "import json, runpy, sys\n"
    "size = int.from_bytes(sys.stdin.buffer.read(8), 'big')\n"
    "sys.path[:] = json.loads(sys.stdin.buffer.read(size))\n"
    "runpy.run_module(sys.argv[1], run_name='__main__', alter_sys=True)\n"
)

#: Variables the child keeps, if set: finding programs and libraries, locale, time zone,
#: temporary files, and what Windows needs to open a socket. Nothing else is inherited.
CHILD_ENVIRONMENT = frozenset(
    {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT", "WINDIR"}
)
#: libpq's settings for reaching a PostgreSQL server (host, TLS files, service file), kept
#: for a PostgreSQL database. ``PGPASSWORD`` is not among them: it goes in the URL, over
#: the pipe (see :func:`child_url`).
LIBPQ_ENVIRONMENT = frozenset(
    {
        "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSFILE", "PGSERVICE",
        "PGSERVICEFILE", "PGSSLMODE", "PGSSLCERT", "PGSSLKEY", "PGSSLROOTCERT", "PGSSLCRL",
        "PGSSLNEGOTIATION", "PGCONNECT_TIMEOUT", "PGAPPNAME", "PGTARGETSESSIONATTRS", "PGTZ",
    }
)  # fmt: skip


def frame(obj: object) -> bytes:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(_LENGTH, "big") + body


def read_body(source: IO[bytes]) -> bytes:
    """The next frame's pickled bytes; EOFError at a clean or a torn end."""
    head = source.read(_LENGTH)
    if len(head) < _LENGTH:
        raise EOFError
    size = int.from_bytes(head, "big")
    body = source.read(size)
    if len(body) < size:
        raise EOFError
    return body


def read_frame(source: IO[bytes]) -> Any:
    return pickle.loads(read_body(source))


def child_environment(url: str) -> dict[str, str]:
    """A child's whole environment: :data:`CHILD_ENVIRONMENT` and ``LC_*`` from this
    process's, and :data:`LIBPQ_ENVIRONMENT` for a PostgreSQL ``url``."""
    keep = CHILD_ENVIRONMENT
    if sa.make_url(url).get_backend_name() == "postgresql":
        keep = keep | LIBPQ_ENVIRONMENT
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith("LC_")}


def child_url(url: str) -> str:
    """``url`` with the password libpq would read from ``PGPASSWORD`` (the child's
    environment has none), so a deployment that sets it keeps working."""
    u = sa.make_url(url)
    password = os.environ.get("PGPASSWORD")
    if u.get_backend_name() != "postgresql" or u.password is not None or not password:
        return url
    return u.set(password=password).render_as_string(hide_password=False)


def child_path() -> list[str]:
    """This process's ``sys.path`` as absolute folders, without the current directory
    (``""``, ``"."`` or its absolute path): the isolated child must not import from it."""
    try:
        here = os.path.realpath(os.getcwd())
    except OSError:  # the current directory was deleted: nothing to leave out
        here = None
    return [
        p
        for p in sys.path
        if isinstance(p, str) and os.path.isabs(p) and os.path.realpath(p) != here
    ]


class Child:
    """One helper process running ``module`` as ``__main__`` (see the module docstring).

    ``what`` names it in errors ("the bulk writer process"). :meth:`send` and
    :meth:`receive` move one frame; a child that went away is a :class:`StorageError`
    with the last lines it wrote to stderr.
    """

    def __init__(self, module: str, url: str, what: str) -> None:
        self.what = what
        self.stopped = False
        # The child's stderr, read if it dies (a file: a pipe nobody reads could fill up).
        self.errors: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", BOOT, module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.errors,
            env=child_environment(url),
        )
        # The child imports what this process can (its sys.path, not only what is
        # installed), minus the current directory: a file planted there is never imported.
        path = json.dumps(child_path()).encode()
        self.send_bytes(len(path).to_bytes(_LENGTH, "big") + path)

    @property
    def stdout(self) -> IO[bytes]:
        assert self.process.stdout is not None
        return self.process.stdout

    def send_bytes(self, data: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(data)
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:  # ValueError: pipe closed
            raise self.died() from exc

    def send(self, obj: object) -> None:
        self.send_bytes(frame(obj))

    def receive(self) -> Any:
        try:
            return read_frame(self.stdout)
        except EOFError:
            raise self.died() from None

    def died(self) -> StorageError:
        """The error to raise for a child that ended; stops it."""
        self.process.wait()
        self.errors.seek(0)
        said = self.errors.read().decode("utf-8", "replace").strip().splitlines()[-5:]
        self.stop()
        return StorageError(
            f"{self.what} ended (exit {self.process.returncode}): "
            + (" | ".join(said) or "no message")
        )

    def stop(self, *, timeout: float = 300) -> None:
        """Close its input (it ends once it has done what it was sent) and wait for it."""
        if self.stopped:
            return
        self.stopped = True
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):  # the child is gone already
                self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - a child stuck in the DB
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.errors.close()
