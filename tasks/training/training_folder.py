"""The store folder of one training, `<storage_url>/training/<training_key>/`, and how a local run
folder is kept in step with it.

The folder mirrors the trainer's run folder: `metrics.jsonl` and `checkpoints/last.pt` while the
training runs (uploaded each time a checkpoint is written, metrics first), then `model.pt` and
`result.json` once it has finished (and `last.pt` is deleted). A run that finds `last.pt` resumes
from it; a run that finds `result.json` reuses `model.pt` instead of training.

Whoever writes checkpoints uploads them: the flow's own process when it trains in-process, rank
0 of the torchrun child (`rank_entry`) when it trains in several processes.
"""

import json
import shutil
from pathlib import Path

from autolabel.models.weight_files import sha256_of
from autolabel.storage.errors import StorageConfigError
from autolabel.storage.objectstore import ObjectStore
from autolabel.tasks.training.train_config import TrainResult
from autolabel.tasks.training.train_state import CHECKPOINT_NAME

TRAINING_PREFIX = "training"
RESULT_NAME = "result.json"
SYNCED = ("metrics.jsonl", f"checkpoints/{CHECKPOINT_NAME}")  # upload order: metrics first


def download(store: ObjectStore, key: str, path: Path) -> None:
    """Copy `key` to `path` (through a `.part` file, renamed when complete)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    with store.open(key) as source, part.open("wb") as out:
        shutil.copyfileobj(source, out, 1024 * 1024)
    part.replace(path)


def download_state(store: ObjectStore, work: Path) -> None:
    """Copy the stored metrics and checkpoint (those present) into the run folder `work`."""
    for name in SYNCED:
        if store.exists(name):
            download(store, name, work / name)


def upload_state(store: ObjectStore, work: Path) -> None:
    """Copy the run folder's metrics and checkpoint to the store (metrics first: lines past the
    checkpoint are dropped on resume, a gap before it could not be filled)."""
    for name in SYNCED:
        if (work / name).is_file():
            store.put_file(name, work / name)


def _loss_ends(metrics: Path) -> tuple[float | None, float | None]:
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return (rows[0]["loss"], rows[-1]["loss"]) if rows else (None, None)


def reuse_finished(store: ObjectStore, work: Path) -> dict[str, object]:
    """The stored summary of a finished training, with its `model.pt` downloaded into `work`
    (sha256 checked) as `weights`; `resumed_from_step` is its step count."""
    summary: dict[str, object] = json.loads(store.get(RESULT_NAME))
    download(store, "model.pt", work / "model.pt")
    got = sha256_of(work / "model.pt")
    if got != summary["sha256"]:
        raise StorageConfigError(
            f"expected {store.url}/model.pt to have sha256 {summary['sha256']}, got {got}"
        )
    return {**summary, "weights": str(work / "model.pt"), "resumed_from_step": summary["step"]}


def record_finished(store: ObjectStore, work: Path, result: TrainResult) -> dict[str, object]:
    """Store a finished training: `model.pt`, then `result.json`; then delete `last.pt`.

    Returns:
        The summary stored in `result.json`: `sha256`, `step`, `first_loss`, `final_loss`,
        `samples_used`, `samples_skipped`, `bad_data` (name and reason of each) and `world_size`
        (training processes).

    Raises:
        RuntimeError: the training stopped without final weights (interrupted).
    """
    if result.weights is None or result.sha256 is None:
        raise RuntimeError(f"training stopped at step {result.step} without final weights")
    first_loss, final_loss = _loss_ends(work / "metrics.jsonl")
    summary: dict[str, object] = {
        "sha256": result.sha256,
        "step": result.step,
        "first_loss": first_loss,
        "final_loss": final_loss,
        "samples_used": result.samples_used,
        "samples_skipped": result.samples_skipped,
        "bad_data": [{"name": b.name, "reason": b.reason} for b in result.bad_data],
        "world_size": result.world_size,
    }
    store.put_file("model.pt", result.weights)
    store.put(RESULT_NAME, json.dumps(summary).encode(), content_type="application/json")
    store.delete(SYNCED[1])  # the optimizer state is no longer needed once finished
    return summary
