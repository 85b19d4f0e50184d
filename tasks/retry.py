"""Which failures Prefect retries: transient ones only.

Throttling, dropped connections and database operational errors are retried; a corrupt image,
a bad checkpoint, a wrong parameter or an out-of-memory error at the same batch size never are.
"""

from typing import Any

from prefect.client.schemas.objects import State, TaskRun

from autolabel.storage.db.engine import is_transient_db_error
from autolabel.storage.errors import TransientStorageError

_TRANSIENT = (TransientStorageError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same work may succeed."""
    if isinstance(exc, _TRANSIENT):
        return True
    if is_transient_db_error(exc):
        return True
    cause = exc.__cause__
    return cause is not None and cause is not exc and is_transient(cause)


def _exception_of(state: State[Any]) -> BaseException | None:
    if isinstance(state.data, BaseException):
        return state.data
    result = state.result(raise_on_failure=False)
    return result if isinstance(result, BaseException) else None


def retry_transient(task: object, task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect `retry_condition_fn`: retry only when the failure is transient."""
    del task, task_run
    exc = _exception_of(state)
    return exc is not None and is_transient(exc)
