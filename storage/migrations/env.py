"""Alembic environment: runs migrations on the engine handed over by `alembic_config`."""

from alembic import context
from sqlalchemy import Engine

from autolabel.storage.db import tables  # noqa: F401 - registers the tables on Base.metadata
from autolabel.storage.db.base import Base
from autolabel.storage.db.engine import make_engine

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if isinstance(engine, Engine):
        return engine
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("expected config.attributes['engine'] or sqlalchemy.url, got neither")
    return make_engine(url)


def run_migrations_online() -> None:
    """Run migrations in one transaction (batch mode on SQLite for ALTER support)."""
    engine = _engine()
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
