"""The repository tests of tests/unit/storage/test_repository.py, run on PostgreSQL (COPY path).

The `engine` and `session` fixtures come from this folder's conftest (PostgreSQL).
"""

import pytest

from tests.unit.storage.test_repository import *  # noqa: F403

pytestmark = pytest.mark.integration
