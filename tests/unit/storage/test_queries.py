"""`require_dataset`: the one check of a dataset name (and a run of it) that every command
reading a dataset makes, with one-line errors."""

import pytest
from sqlalchemy.orm import Session

from autolabel.storage.db.label_runs import create_label_run
from autolabel.storage.db.queries import require_dataset
from autolabel.storage.db.repository import get_or_create_dataset
from autolabel.storage.errors import StorageConfigError


def test_a_dataset_and_a_run_of_it_resolve(session: Session) -> None:
    dataset_id = get_or_create_dataset(session, name="ds")
    run_id = create_label_run(session, dataset_id=dataset_id, work_key="w", parameters={})
    assert require_dataset(session, name="ds") == dataset_id
    assert require_dataset(session, name="ds", run_id=run_id) == dataset_id


@pytest.mark.parametrize(
    ("name", "run", "message"),
    [
        ("nope", None, "expected an existing dataset, got 'nope'"),
        ("ds", "missing", "expected a label run of dataset 'ds', got run 999"),
        ("ds", "other", "expected a label run of dataset 'ds', got run {other}"),
    ],
)
def test_unknown_datasets_and_foreign_runs_are_one_line_errors(
    session: Session, name: str, run: str | None, message: str
) -> None:
    get_or_create_dataset(session, name="ds")
    other = create_label_run(
        session,
        dataset_id=get_or_create_dataset(session, name="other"),
        work_key="w",
        parameters={},
    )
    run_id = {None: None, "missing": 999, "other": other}[run]
    with pytest.raises(StorageConfigError) as raised:
        require_dataset(session, name=name, run_id=run_id)
    assert str(raised.value) == message.format(other=other)
