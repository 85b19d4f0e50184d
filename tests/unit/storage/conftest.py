"""Fixtures of the storage unit tests: a migrated SQLite database and a rolled-back session."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.unit.storage.helpers import migrated_engine, rollback_session


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A fresh SQLite database file, migrated to head."""
    yield from migrated_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test."""
    yield from rollback_session(engine)
