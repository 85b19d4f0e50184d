"""Flow `autolabel-shard`: one shard of a label run, as its own flow run on a work pool.

    claim the attempt (a `label_shards` row, refused when the run has ended) -> hold a free
    device of this host -> load the models -> label the shard -> record the result

A job started against a Prefect server submits these through the shard deployment
(`label-shard` in deploy/prefect.yaml; `autolabel.flows.shard_fanout`) and reads their progress
and results from the database; it reruns an attempt that failed or whose worker died, for the
images that attempt had not stored.
"""

from prefect import flow
from prefect.runtime import flow_run

from autolabel.flows.resources import database_url, device_slot, process_resources
from autolabel.flows.settings import get_settings
from autolabel.storage.db.engine import make_engine
from autolabel.tasks.labeling.job import LabelJob, RunContext, ShardRef, ShardResult
from autolabel.tasks.labeling.shard_runs import ShardAttempt, label_attempt, process_age_seconds
from autolabel.tasks.resources import bound, host_devices


@flow(name="autolabel-shard", validate_parameters=True, retries=0)
def label_shard_run(
    shard: ShardRef, job: LabelJob, ctx: RunContext, attempt: int = 1
) -> ShardResult:
    """Label `shard` of run `ctx.run_id` on a free device of this host (`attempt` counts from 1)."""
    process_start = process_age_seconds()
    settings = get_settings()
    # The attempt's row and heartbeat use an engine of their own: the resources below are built
    # only once a device is held, and the wait for one is covered by the heartbeat.
    engine = make_engine(database_url(settings))
    try:
        flow_run_id = str(flow_run.get_id() or "")
        with ShardAttempt(engine, shard, ctx, attempt=attempt, flow_run_id=flow_run_id) as record:
            with device_slot(host_devices(settings.models.device)) as device:
                record.on_device(device)
                with bound(process_resources(settings, device=device)) as resources:
                    result = label_attempt(
                        shard,
                        job,
                        ctx,
                        resources=resources,
                        attempt=record,
                        process_start=process_start,
                    )
            record.completed(result)
            return result
    finally:
        engine.dispose()
