"""`autolabel serve`: serve the labeling and export flows as deployments from this process."""

from typing import TYPE_CHECKING, cast

import typer

from autolabel.flows.cli.checks import prefect_for_flows
from autolabel.flows.cli.label import JobParameterError

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment


def serve(
    cron: str | None = typer.Option(
        None, help='Schedule for the labeling deployment, e.g. "0 2 * * *" (needs --source...).'
    ),
    source: str | None = typer.Option(None, help="Default job: images URL."),
    dataset: str | None = typer.Option(None, help="Default job: dataset name."),
    prompts: str | None = typer.Option(None, help="Default job: categories."),
    limit: int = typer.Option(1, help="Most flow runs this process executes at once."),
    retrain_holdout: str | None = typer.Option(
        None, help="Also serve `retrain-sam`, triggered by new SA-1B data, evaluated on this."
    ),
    retrain_model: str = typer.Option("efficientvit-sam-l0", help="Variant retrained."),
    retrain_max_steps: int = typer.Option(2000, help="Optimiser steps per retraining."),
    retrain_cron: str | None = typer.Option(None, help="Also retrain on this schedule."),
) -> None:
    """Serve `autolabel-dataset`, `export-coco`, `export-sa1b` (and `retrain-sam`) until Ctrl-C."""
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import RunnerDeployment

    from autolabel.flows.export_coco import export_coco
    from autolabel.flows.label_dataset import autolabel_dataset
    from autolabel.flows.sa1b import export_sa1b_shards
    from autolabel.tasks.labeling.job import LabelJob

    job = None
    if source or dataset or prompts:
        if not (source and dataset and prompts):
            raise JobParameterError("expected --source, --dataset and --prompts together")
        job = LabelJob(source=source, dataset=dataset, prompts=prompts)
    elif cron:
        raise JobParameterError("expected --source, --dataset and --prompts with --cron")
    label = autolabel_dataset.to_deployment(
        name="label",
        parameters={"job": job.model_dump(mode="json")} if job else None,
        cron=cron,
    )
    deployments = [
        label,
        export_coco.to_deployment(name="export-coco"),
        export_sa1b_shards.to_deployment(name="export-sa1b"),
    ]
    if retrain_holdout is not None:
        deployments.append(
            retrain_deployment(retrain_holdout, retrain_model, retrain_max_steps, retrain_cron)
        )
    # `to_deployment` returns a coroutine only when called from async code.
    with prefect_for_flows():
        prefect_serve(*(cast(RunnerDeployment, d) for d in deployments), limit=limit)


def retrain_deployment(
    holdout: str, model: str, max_steps: int, cron: str | None
) -> "RunnerDeployment":
    """`retrain-sam`, run for each `autolabel.sa1b.landed` event (and on `cron`), one at a time."""
    from prefect.events import DeploymentEventTrigger

    from autolabel.flows.retrain import retrain_sam
    from autolabel.tasks.events import SA1B_EVENT

    request = {"holdout": holdout, "model": model, "max_steps": max_steps}
    trigger = DeploymentEventTrigger(
        expect={SA1B_EVENT},
        match={"prefect.resource.id": "autolabel.sa1b.*"},
        parameters={"request": {"data": "{{ event.payload.url }}", **request}},
    )
    deployment = retrain_sam.to_deployment(
        name="retrain-sam", triggers=[trigger], cron=cron, concurrency_limit=1
    )
    return cast("RunnerDeployment", deployment)
