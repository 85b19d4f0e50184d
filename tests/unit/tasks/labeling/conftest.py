"""A migrated database of each backend for the labeling lease tests (runs and shard attempts)."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from autolabel.storage.db.engine import make_engine, upgrade_to_head
from tests.conftest import PostgresDatabases


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database of each backend; its work is committed (claims are transactions)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'labeling.db'}"
    else:
        databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
        url = databases.create()
    engine = make_engine(url)
    upgrade_to_head(engine)
    yield engine
    engine.dispose()
