"""The label runs a person lists (`autolabel runs`), without importing any model code: the
listing answers in the time of a query."""

from autolabel.flows.resources import process_resources
from autolabel.flows.settings import Settings
from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.queries import LabelRunInfo
from autolabel.tasks.labeling.run_lease import close_dead_runs


def recent_runs(settings: Settings, *, dataset: str | None, limit: int) -> list[LabelRunInfo]:
    """The most recent label runs, newest first, after marking dead `running` runs `crashed`
    (their process is gone, or their heartbeat lapsed): a listing never shows a dead run as
    running."""
    engine = process_resources(settings).engine
    close_dead_runs(engine)
    with session_scope(engine) as session:
        return queries.list_label_runs(session, dataset=dataset, limit=limit)
