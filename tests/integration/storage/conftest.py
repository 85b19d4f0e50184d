"""Fixtures of the storage integration tests: the PostgreSQL database migrated once per module."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tests.unit.storage.helpers import migrated_engine, rollback_session


@pytest.fixture(scope="module")
def engine(postgres_url: str) -> Iterator[Engine]:
    """The test session's PostgreSQL database, migrated to head."""
    yield from migrated_engine(postgres_url)


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose work is rolled back after the test."""
    yield from rollback_session(engine)
