"""Engines for the three supported databases, and schema upgrades through Alembic.

* **SQLite** (the embedded default, ``sqlite:///movecar.db``): a real file in WAL mode,
  ``synchronous=FULL`` (a committed command survives a crash or power loss: 七(三) "防止
  ... 丢失"), foreign keys on, and every write transaction opened with ``BEGIN IMMEDIATE``
  so that writers queue on SQLite's one write lock (``busy_timeout``) instead of failing
  when a read transaction tries to upgrade.
* **PostgreSQL** (psycopg 3) at READ COMMITTED; **MariaDB** (PyMySQL, utf8mb4) at READ
  COMMITTED, so that a locking read sees the latest committed version and InnoDB takes no
  gap locks between appends to different cases.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

    from movecar_adapters.crypto import KeyRing

# Alembic is imported where it is used: the bulk writer process needs only make_engine.

from movecar_adapters.config import mask_url
from movecar_adapters.sql.errors import DatabaseUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"

#: Execution option: open a read-only transaction (plain ``BEGIN`` on SQLite).
READ_ONLY = "movecar_read_only"


def make_engine(
    url: str | sa.URL,
    *,
    sqlite_synchronous: str = "FULL",
    busy_timeout_ms: int = 30_000,
    **kwargs: Any,
) -> sa.Engine:
    """An engine configured for the store (see the module docstring)."""
    engine = _make_engine(url, sqlite_synchronous, busy_timeout_ms, dict(kwargs))
    _RECIPES[engine] = (
        sa.make_url(url).render_as_string(hide_password=False),
        {"sqlite_synchronous": sqlite_synchronous, "busy_timeout_ms": busy_timeout_ms, **kwargs},
    )
    return engine


#: How each engine of :func:`make_engine` was made, so another process can make its twin.
_RECIPES: weakref.WeakKeyDictionary[sa.Engine, tuple[str, dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def engine_recipe(engine: sa.Engine) -> tuple[str, dict[str, Any]] | None:
    """``(url, options)`` with which :func:`make_engine` made ``engine`` (None if it did not):
    ``make_engine(url, **options)`` in another process opens the same database the same way.
    The URL includes the password, if any: pass it only to a process of your own."""
    return _RECIPES.get(engine)


def _make_engine(
    url: str | sa.URL, sqlite_synchronous: str, busy_timeout_ms: int, kwargs: dict[str, Any]
) -> sa.Engine:
    u = sa.make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if u.database in (None, "", ":memory:"):
            raise ValueError("the SQL store needs a SQLite *file* (WAL mode); got in-memory")
        connect_args = {"check_same_thread": False, "timeout": busy_timeout_ms / 1000}
        connect_args.update(kwargs.pop("connect_args", {}))
        engine = sa.create_engine(
            u, connect_args=connect_args, pool_size=8, max_overflow=24, **kwargs
        )
        sync = sqlite_synchronous.upper()
        if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"sqlite_synchronous={sqlite_synchronous!r}")

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sync}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            read_only = conn.get_execution_options().get(READ_ONLY, False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    if backend == "postgresql":
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 30)
        kwargs.setdefault("isolation_level", "READ COMMITTED")
        return sa.create_engine(u, pool_pre_ping=True, **kwargs)
    if backend in ("mysql", "mariadb"):
        if "charset" not in u.query:
            u = u.update_query_dict({"charset": "utf8mb4"})
        kwargs.setdefault("pool_size", 10)
        kwargs.setdefault("max_overflow", 30)
        kwargs.setdefault("isolation_level", "READ COMMITTED")
        return sa.create_engine(u, pool_pre_ping=True, pool_recycle=3600, **kwargs)
    raise ValueError(f"unsupported database {backend!r}: use sqlite, postgresql or mariadb")


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(
    engine: sa.Engine, revision: str = "head", *, keys: KeyRing | None = None
) -> str | None:
    """Migrate the database to ``revision``; returns the revision it is at afterwards.

    ``keys``: the data-encryption keys, for migrations that rewrite encrypted values (0003
    rebinds legacy phone tokens to their place; without keys it leaves them to
    ``movecar keys rotate``). They are handed to the migrations only, never stored.
    """
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        cfg.attributes["movecar_keys"] = keys
        command.upgrade(cfg, revision)
    return current_revision(engine)


def downgrade(engine: sa.Engine, revision: str, *, keys: KeyRing | None = None) -> str | None:
    """Migrate the database back to ``revision`` (``keys`` as for :func:`upgrade`)."""
    from alembic import command

    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        cfg.attributes["movecar_keys"] = keys
        command.downgrade(cfg, revision)
    return current_revision(engine)


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def open_engine(url: str, *, migrate: bool | None = None, keys: KeyRing | None = None) -> sa.Engine:
    """An engine on ``url`` that is known to answer, its schema migrated if asked.

    ``migrate`` None: migrate SQLite files (the embedded default needs no setup step),
    leave servers to ``movecar db upgrade``; ``keys`` go to the migrations
    (:func:`upgrade`). Raises :class:`DatabaseUnavailable` (URL masked, no traceback
    needed) when the database cannot be opened or reached.
    """
    shown = mask_url(url)
    try:
        engine = make_engine(url)
    except (ValueError, sa.exc.ArgumentError, ImportError) as exc:
        raise DatabaseUnavailable(f"database {shown}: {_first_line(exc)}") from None
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if migrate is False and path and not Path(path).is_file():
        # Opening would create an empty file: a typo in a path must not become a database.
        engine.dispose()
        raise DatabaseUnavailable(f"database {shown}: no such file (run `movecar db upgrade`)")
    try:
        if migrate or (migrate is None and engine.dialect.name == "sqlite"):
            upgrade(engine, keys=keys)
        else:
            with engine.connect():
                pass
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        raise DatabaseUnavailable(
            f"database {shown}: cannot open it: {_first_line(exc.orig or exc)}"
        ) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
