"""Support for the SQL store tests: isolated databases on the configured servers.

Importable from test modules and from worker subprocesses (``tests/sql`` is on the path).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.crypto import KeyRing
from adapters.sql import make_engine, upgrade

BACKENDS = ("sqlite", "postgresql", "mariadb")
ENV = {"postgresql": "MOVECAR_TEST_POSTGRES_URL", "mariadb": "MOVECAR_TEST_MARIADB_URL"}
LABEL = {"postgresql": "PostgreSQL", "mariadb": "MariaDB"}
SKIP_REASON = {b: f"set {ENV[b]} to run against {LABEL[b]}" for b in ENV}

KEY_1 = KeyRing.generate()
KEY_2 = KeyRing.generate()


class Databases:
    """Creates isolated databases on the configured servers and drops them afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.run = uuid.uuid4().hex[:10]
        self.cleanups: list[Callable[[], None]] = []
        self.checked: dict[str, str] = {}
        self.shared: dict[str, str] = {}

    def server(self, backend: str) -> str:
        """The server URL for ``backend``: skip if unset, fail if unreachable."""
        if backend == "sqlite":
            if os.environ.get("MOVECAR_TEST_SQLITE", "") in ("0", "off", "no"):
                pytest.skip("MOVECAR_TEST_SQLITE=0 turns the SQLite tests off")
            return "sqlite"
        if backend in self.checked:
            return self.checked[backend]
        url = os.environ.get(ENV[backend])
        if not url:
            pytest.skip(SKIP_REASON[backend])
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.DBAPIError as exc:
            pytest.fail(f"{ENV[backend]}={url} is set but unreachable: {exc.orig}", pytrace=False)
        finally:
            engine.dispose()
        self.checked[backend] = url
        return url

    def new(self, backend: str) -> str:
        """The URL of a new, empty, isolated database, migrated to head."""
        server = self.server(backend)
        name = f"mc_{self.run}_{uuid.uuid4().hex[:8]}"
        if backend == "sqlite":
            base = os.environ.get("MOVECAR_TEST_SQLITE")
            folder = Path(base) if base and Path(base).is_dir() else self.tmp
            url = f"sqlite:///{folder / (name + '.db')}"

            def drop_files() -> None:
                for suffix in (".db", ".db-wal", ".db-shm"):
                    (folder / (name + suffix)).unlink(missing_ok=True)

            self.cleanups.append(drop_files)
        elif backend == "postgresql":
            admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
            url = (
                sa.make_url(server)
                .update_query_dict({"options": f"-csearch_path={name}"})
                .render_as_string(hide_password=False)
            )

            def drop_schema() -> None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
                admin.dispose()

            self.cleanups.append(drop_schema)
        else:
            admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(
                    sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                )
            url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)

            def drop_database() -> None:
                with admin.connect() as conn:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
                admin.dispose()

            self.cleanups.append(drop_database)
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        return url

    def shared_url(self, backend: str) -> str:
        if backend not in self.shared:
            self.shared[backend] = self.new(backend)
        return self.shared[backend]

    def close(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()
