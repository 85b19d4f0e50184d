"""Fixtures shared by the model tests."""

from collections.abc import Iterator

import pytest

from tests.unit.models.helpers import torch_threads


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch intra-op thread for the module: the tiny test model is latency-bound, and
    OpenMP threads would spin on a busy machine. Use it with `pytest.mark.usefixtures`."""
    with torch_threads(1):
        yield
