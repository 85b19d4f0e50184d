"""Declarative base with a constraint naming convention and the portable column types.

Every table works on PostgreSQL (psycopg 3) and SQLite. Big integer primary keys map to SQLite's
`INTEGER PRIMARY KEY` (the only auto-incrementing type there); JSON maps to JSONB on PostgreSQL.
"""

import enum
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Enum,
    Integer,
    MetaData,
    any_,
    literal,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.types import TypeDecorator, TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids on PostgreSQL; SQLite's rowid alias (also 64-bit) so that it auto-increments."""

JsonDoc: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
"""A JSON document column (JSONB on PostgreSQL)."""


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class Timestamp(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp (SQLite, which drops the zone, reads back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        """Store aware datetimes as UTC."""
        if value is not None and value.tzinfo is not None:
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        """Read naive values (SQLite) as UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def str_enum(enum_cls: type[enum.StrEnum], name: str) -> Enum:
    """A VARCHAR column with a CHECK constraint holding the enum's values (no native PG enum).

    Args:
        enum_cls: The Python enum; its `.value`s are stored.
        name: Constraint name suffix (the convention makes it `ck_<table>_<name>`).
    """
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    """Root of every autolabel table; `Base.metadata` carries the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def dialect_insert(session: Session, table: type[Base]) -> PgInsert | SqliteInsert:
    """An INSERT with `on_conflict_*` support for the session's dialect (PostgreSQL or SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(table)
    return sqlite_insert(table)


def id_in(session: Session, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column IN ids` as one array parameter on PostgreSQL (`= ANY(%s)`, so the statement text
    and its parse stay the same for any number of ids); a plain IN list on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(ColumnElement[bool], column == any_(literal(list(ids), ARRAY(BigInteger()))))
    return cast(ColumnElement[bool], column.in_(list(ids)))


def driver_connection(session: Session) -> Any:
    """The session's raw DB-API connection (psycopg on PostgreSQL), for COPY."""
    raw = session.connection().connection.driver_connection
    if raw is None:
        raise RuntimeError("expected an open psycopg connection, got a closed one")
    return raw


# Binary COPY: about 5x less client CPU than text COPY, and cheaper to parse on the server.
BINARY_COPY = "(FORMAT BINARY)"
