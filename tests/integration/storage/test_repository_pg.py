"""The repository tests of tests/unit/storage/test_repository.py, run on PostgreSQL (COPY path)."""

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from autolabel.storage.db.engine import make_engine, upgrade_to_head
from tests.unit.storage.test_repository import *  # noqa: F403
from tests.unit.storage.test_repository import session  # noqa: F401 - same rollback fixture

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")  # type: ignore[no-redef]
def engine(postgres_url: str) -> Iterator[Engine]:
    eng = make_engine(postgres_url)
    upgrade_to_head(eng)
    yield eng
    eng.dispose()
