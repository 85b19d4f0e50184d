"""Engines, sessions and schema migration for the annotation database.

`make_engine` accepts PostgreSQL (driven by psycopg 3) and SQLite URLs. Database operational
errors (connection reset, serialization failure, deadlock) that leave `session_scope` become
`TransientStorageError`, the only storage error worth retrying.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session

from autolabel.storage.errors import StorageConfigError, TransientStorageError

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _normalize_url(url: str | URL) -> URL:
    try:
        parsed = make_url(url)
    except exc.ArgumentError as err:
        raise StorageConfigError(
            "expected a database URL like postgresql://user@host/db or sqlite:///path, "
            "got an unparsable value"
        ) from err
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("postgresql", "sqlite"):
        raise StorageConfigError(
            f"expected a postgresql or sqlite URL, got backend {parsed.get_backend_name()!r}"
        )
    return parsed


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _one_line(error: BaseException, password: str | None) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line.replace(password, "***") if password else line


def make_engine(
    url: str | URL,
    *,
    check: bool = True,
    echo: bool = False,
    statement_timeout_s: float | None = None,
) -> Engine:
    """Create an engine for PostgreSQL (psycopg 3) or SQLite (WAL, foreign keys on).

    Args:
        url: `postgresql://...` (the psycopg driver is implied), `postgresql+psycopg://...` or
            `sqlite:///path.db`.
        check: Open one connection now, so that a wrong URL fails here rather than mid-job.
        echo: Log SQL statements.
        statement_timeout_s: PostgreSQL only: cancel statements running longer than this (the
            cancellation surfaces as `TransientStorageError` from `session_scope`).

    Raises:
        StorageConfigError: Unknown backend or unreachable database; the message is one line and
            never contains the password.
    """
    parsed = _normalize_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "postgresql":
        connect_args: dict[str, Any] = {"connect_timeout": 10, "application_name": "autolabel"}
        if statement_timeout_s is not None:
            connect_args["options"] = f"-c statement_timeout={int(statement_timeout_s * 1000)}"
        kwargs.update(pool_pre_ping=True, connect_args=connect_args)
    engine = create_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if check:
        try:
            with engine.connect():
                pass
        except exc.DBAPIError as err:
            engine.dispose()
            safe = parsed.render_as_string(hide_password=True)
            raise StorageConfigError(
                f"cannot connect to database {safe}: {_one_line(err, parsed.password)}"
            ) from None
    return engine


def is_transient_db_error(error: BaseException) -> bool:
    """Whether a SQLAlchemy error is worth retrying (operational error or dropped connection)."""
    if isinstance(error, exc.OperationalError):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error.

    The caller owns the transaction; repository functions never commit.

    Raises:
        TransientStorageError: An operational database error happened inside the block or at
            commit (retry the whole block).
    """
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except exc.DBAPIError as err:
        session.rollback()
        if is_transient_db_error(err):
            password = engine.url.password
            raise TransientStorageError(
                f"database operation failed transiently: {_one_line(err, password)}"
            ) from err
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url_or_engine: str | URL | Engine) -> Config:
    """An Alembic config pointing at the packaged migrations (no alembic.ini needed).

    An `Engine` is passed to env.py through `config.attributes["engine"]`.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if isinstance(url_or_engine, Engine):
        config.attributes["engine"] = url_or_engine
    else:
        config.attributes["engine"] = make_engine(url_or_engine)
    return config


def upgrade_to_head(url_or_engine: str | URL | Engine) -> None:
    """Apply every pending migration (creates the schema on an empty database)."""
    command.upgrade(alembic_config(url_or_engine), "head")


def head_revision() -> str:
    """The newest migration revision shipped with this package."""
    script = ScriptDirectory.from_config(alembic_config_without_engine())
    head = script.get_current_head()
    if head is None:
        raise StorageConfigError(f"expected migrations in {MIGRATIONS_DIR}, found none")
    return head


def alembic_config_without_engine() -> Config:
    """An Alembic config for offline use (script inspection)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """The database's current revision (None for an unmigrated database) and the head."""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head_revision()
