"""Only transient failures are retried."""

import pytest
from prefect.states import Failed
from sqlalchemy.exc import IntegrityError, OperationalError

from autolabel.storage.errors import InvalidImageError, TransientStorageError
from autolabel.tasks.retry import is_transient, retry_transient


@pytest.mark.parametrize(
    "exc",
    [
        TransientStorageError("SlowDown from s3"),
        ConnectionResetError("reset by peer"),
        TimeoutError("read timed out"),
        OperationalError("SELECT 1", {}, Exception("server closed the connection")),
    ],
)
def test_transient(exc: BaseException) -> None:
    assert is_transient(exc)
    assert retry_transient(None, None, Failed(data=exc))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "exc",
    [
        InvalidImageError("truncated", "image file is truncated"),
        ValueError("bad parameter"),
        MemoryError(),
        IntegrityError("INSERT", {}, Exception("duplicate key")),
    ],
)
def test_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)
    assert not retry_transient(None, None, Failed(data=exc))  # type: ignore[arg-type]


def test_cause_chain_is_followed() -> None:
    outer = RuntimeError("while fetching a.jpg")
    outer.__cause__ = ConnectionResetError("reset")
    assert is_transient(outer)
    assert not is_transient(RuntimeError("no cause"))
