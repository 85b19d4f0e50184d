"""Flow `retrain-sam`: new SA-1B data -> fine-tuned EfficientViT-SAM, promoted only if better.

    starting point (production version, else released weights) -> fine-tune on `data`
    (checkpointed to, and resumed from, `<storage_url>/training/<key>/`; in the flow's process,
    or in `processes_per_node` torchrun processes it waits for)
    -> evaluate candidate and starting point on `holdout` -> register the candidate (weights in
    the model store, sha256, metrics) -> promote it when it beats production by `margin`, unless
    either evaluation skipped more than `max_skipped_fraction` of its items (no decision then)

Its deployment (deploy/prefect.yaml) runs on a schedule and on the `autolabel.sa1b.landed`
event, with a concurrency limit of 1 so that two retrainings never overlap.
"""

import tempfile

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from autolabel.flows.resources import process_resources
from autolabel.flows.settings import get_settings
from autolabel.tasks.resources import bound
from autolabel.tasks.training.retrain import (
    ModelScore,
    RetrainRequest,
    RetrainResult,
    decide_promotion,
    training_counts,
)
from autolabel.tasks.training.training_tasks import (
    evaluate_weights,
    promote,
    register_candidate,
    starting_point,
    train_candidate,
)

__all__ = ["RetrainRequest", "RetrainResult", "retrain_sam"]


def _report(result: RetrainResult) -> str:
    names = sorted(result.candidate.metrics)
    rows = ["| model | images used | skipped | " + " | ".join(names) + " |"]
    rows.append("|---" * (len(names) + 3) + "|")
    for score in (result.candidate, result.production):
        if score is not None:
            values = " | ".join(f"{score.metrics.get(k, float('nan')):.4f}" for k in names)
            rows.append(f"| {score.name} | {score.items.used} | {score.items.skipped} | {values} |")
    verdict = "promoted" if result.promoted else "not promoted"
    training = f"Training: `{result.training_url}` (resumed at step {result.resumed_from_step})"
    data = (
        f"Training samples: {result.training_data.used} used, "
        f"{result.training_data.skipped} bad items skipped"
    )
    return "\n".join(
        [f"# Retraining: {verdict}", "", result.reason, "", training, "", data, "", *rows]
    )


@flow(name="retrain-sam", validate_parameters=True)
def retrain_sam(request: RetrainRequest) -> RetrainResult:
    """Fine-tune `request.model` on `request.data`; promote the result only if it is better."""
    with bound(process_resources(get_settings())):
        return _retrain(request)


def _retrain(request: RetrainRequest) -> RetrainResult:
    logger = get_run_logger()
    start_name, start_weights = starting_point(request)
    with tempfile.TemporaryDirectory(prefix="autolabel-train-") as work_dir:
        trained = train_candidate(request, (start_name, start_weights), work_dir)
        logger.info(
            "training %s: %d of %d steps found done, trained in %s process(es)",
            trained["training_url"],
            trained["resumed_from_step"],
            request.max_steps,
            trained.get("world_size", 1),
        )
        candidate_eval = evaluate_weights(request, str(trained["weights"]))
        baseline_eval = evaluate_weights(request, start_weights)
        name, uri = register_candidate(request, trained, candidate_eval.registry_metrics())
    candidate = ModelScore(name=name, metrics=candidate_eval.metrics, items=candidate_eval.items)
    baseline = ModelScore(
        name=start_name or "random-init", metrics=baseline_eval.metrics, items=baseline_eval.items
    )
    promoted, reason = decide_promotion(candidate, baseline, request)
    if promoted:
        promote(name)
    final_loss = trained["final_loss"]
    result = RetrainResult(
        candidate=candidate,
        production=baseline,
        promoted=promoted,
        reason=reason,
        weights_uri=uri,
        sha256=str(trained["sha256"]),
        final_loss=float(final_loss) if isinstance(final_loss, int | float) else None,
        training_url=str(trained["training_url"]),
        resumed_from_step=int(str(trained["resumed_from_step"])),
        training_data=training_counts(trained),
    )
    logger.info("candidate %s: %s", name, reason)
    create_markdown_artifact(_report(result), key="retrain-sam-result")
    return result
