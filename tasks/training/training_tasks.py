"""How retraining is orchestrated: the Prefect tasks of the `retrain-sam` flow."""

from prefect import get_run_logger, task

from autolabel.tasks import resources
from autolabel.tasks.retry import retry_transient
from autolabel.tasks.training import retrain
from autolabel.tasks.training.retrain import Evaluation, RetrainRequest


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def starting_point(request: RetrainRequest) -> tuple[str | None, str | None]:
    """(name, local weights path) to start from; see `retrain.starting_point`."""
    return retrain.starting_point(request, resources.current())


@task
def train_candidate(
    request: RetrainRequest, start: tuple[str | None, str | None], work_dir: str
) -> dict[str, object]:
    """Fine-tune from `start` (name, weights path) in `work_dir`, resuming from the training's
    checkpoint in the store, in this process or in `request.processes_per_node` torchrun
    processes (their output lines go to this task's log); returns the weights path, sha256,
    losses, samples used and skipped, world size and store location."""
    logger = get_run_logger()
    return retrain.train_candidate(request, start, work_dir, resources.current(), logger)


@task
def evaluate_weights(request: RetrainRequest, weights: str | None) -> Evaluation:
    """Held-out box mIoU (overall and by size) of `weights`, on the configured device, with the
    images used and skipped as unreadable."""
    return retrain.evaluate_weights(request, weights, resources.current())


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def register_candidate(
    request: RetrainRequest, trained: dict[str, object], metrics: dict[str, float]
) -> tuple[str, str]:
    """Upload the weights to the model store and register them as a candidate version."""
    return retrain.register_candidate(request, trained, metrics, resources.current())


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_transient)
def promote(name: str) -> None:
    """Make `name` the production version of its variant (the previous one is archived)."""
    retrain.promote(name, resources.current())
