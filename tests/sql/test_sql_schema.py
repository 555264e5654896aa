"""Column types: what the store's own processors write is what SQLAlchemy's would."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import mysql, postgresql, sqlite

from movecar_adapters.sql.schema import UTCDateTime

DIALECTS = [sqlite.dialect(), postgresql.dialect(), mysql.dialect()]


def processors(dialect: sa.Dialect) -> tuple[Any, Any]:
    """The processor SQLAlchemy runs for the column, and the one it would run without ours."""
    for_dialect = UTCDateTime().dialect_impl(dialect)
    ours = for_dialect.bind_processor(dialect)
    standard = sa.types.TypeDecorator.bind_processor(for_dialect, dialect)
    return ours, standard


@given(st.datetimes(timezones=st.timezones()) | st.none())
def test_sqlite_datetime_text_is_sqlalchemys(value: dt.datetime | None) -> None:
    ours, standard = processors(sqlite.dialect())
    assert ours.__name__ == "to_text"  # the faster one is in use on SQLite
    assert ours(value) == standard(value)


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_naive_times_are_refused_everywhere(dialect: sa.Dialect) -> None:
    ours, _ = processors(dialect)
    with pytest.raises(ValueError, match="naive"):
        ours(dt.datetime(2025, 1, 1))


def test_servers_use_sqlalchemys_processor() -> None:
    for dialect in DIALECTS[1:]:
        ours, standard = processors(dialect)
        assert ours.__name__ == standard.__name__ == "process"
        when = dt.datetime(2025, 1, 1, 8, tzinfo=dt.timezone(dt.timedelta(hours=8)))
        assert ours(when) == standard(when) == dt.datetime(2025, 1, 1, 0, 0)
