"""`autolabel serve`: serve the labeling and export flows as deployments from this process."""

from typing import cast

import typer

from autolabel.flows.cli.label import JobParameterError
from autolabel.tasks.params import LabelJob


def serve(
    cron: str | None = typer.Option(
        None, help='Schedule for the labeling deployment, e.g. "0 2 * * *" (needs --source...).'
    ),
    source: str | None = typer.Option(None, help="Default job: images URL."),
    dataset: str | None = typer.Option(None, help="Default job: dataset name."),
    prompts: str | None = typer.Option(None, help="Default job: categories."),
    limit: int = typer.Option(1, help="Most flow runs this process executes at once."),
) -> None:
    """Serve `autolabel-dataset` and `export-coco` until interrupted (Ctrl-C)."""
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import RunnerDeployment

    from autolabel.flows.autolabel import autolabel_dataset
    from autolabel.flows.export_coco import export_coco

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
    export = export_coco.to_deployment(name="export-coco")
    # `to_deployment` returns a coroutine only when called from async code.
    prefect_serve(cast(RunnerDeployment, label), cast(RunnerDeployment, export), limit=limit)
