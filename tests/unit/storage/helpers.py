"""Database set-up shared by the storage tests on SQLite (unit) and PostgreSQL (integration)."""

from collections.abc import Iterator

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from autolabel.storage.db.engine import make_engine, upgrade_to_head


def migrated_engine(url: str) -> Iterator[Engine]:
    """Yield an engine on `url` with the schema at the Alembic head; disposed afterwards."""
    engine = make_engine(url)
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


def rollback_session(engine: Engine) -> Iterator[Session]:
    """Yield a session inside an outer transaction that is rolled back afterwards.

    Code under test may commit: with `create_savepoint` its commits end a savepoint, and the
    rollback of the outer transaction still leaves the database as it was.
    """
    with engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        yield session
        session.close()
        trans.rollback()
