"""How SA-1B ingest is orchestrated: the Prefect task of the `ingest-sa1b` flow."""

from pathlib import Path

from prefect import task

from autolabel.tasks import resources
from autolabel.tasks.ingest.sa1b_ingest import Sa1bIngestResult, ingest_shards
from autolabel.tasks.retry import retry_transient


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def upload_sa1b_shards(folder: str, to: str) -> Sa1bIngestResult:
    """Check the shards of `folder` and upload the readable ones to `to`."""
    return ingest_shards(Path(folder), to, resources.current())
