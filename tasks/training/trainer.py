"""The training loop: single process, or one process per GPU/CPU slot under `torchrun`.

`run_training(TrainConfig(...))` reads the `torchrun` environment (`RANK`, `WORLD_SIZE`,
`LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`); with `WORLD_SIZE > 1` it joins the process group
(nccl on CUDA, gloo on CPU) and wraps the model in `DistributedDataParallel`. It checkpoints every
`checkpoint_every` steps and when SIGTERM arrives (then returns with `interrupted=True`), and
resumes from `<output>/checkpoints/last.pt` when that exists. Rank 0 appends one JSON line per step
to `<output>/metrics.jsonl` and writes the final weights to `<output>/model.pt`; the
`on_checkpoint` hook lets a caller copy each checkpoint elsewhere (an object store) as it lands.
"""

import json
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel

from autolabel.models.registry import create_model, get_spec
from autolabel.models.training.optim import (
    build_optimizer,
    cosine_schedule,
    paper_learning_rate,
)
from autolabel.models.training.step import (
    EncoderDistillModule,
    PromptedSample,
    SamTrainingModule,
    StepResult,
    bf16_supported,
    distill_step,
    freeze_batch_norm_stats,
    train_step,
)
from autolabel.models.training.trained_weights import save_trained_weights
from autolabel.storage.objectstore import open_store
from autolabel.tasks.training.data import (
    BadData,
    DataItem,
    DataTally,
    Sa1bStream,
    StreamConfig,
    StreamPosition,
    list_units,
    make_loader,
)
from autolabel.tasks.training.distillation import TeacherCache, load_teacher
from autolabel.tasks.training.distributed import (
    StopFlag,
    any_rank,
    distributed_env,
    gather,
    mean_over_ranks,
    shutdown_distributed,
)
from autolabel.tasks.training.train_config import TrainConfig, TrainResult
from autolabel.tasks.training.train_state import (
    CHECKPOINT_NAME,
    capture_rng,
    load_training_state,
    restore_rng,
    save_training_state,
)

log = logging.getLogger(__name__)


class _Batches:
    """Micro-batches from the rank's stream, rolling over epochs; tracks the stream position and
    counts the samples used and the bad items skipped."""

    def __init__(
        self, config: TrainConfig, stream_config: StreamConfig, rank: int, world: int
    ) -> None:
        self.config, self.stream_config = config, stream_config
        self.rank, self.world = rank, world
        self.units = list_units(config.data, s3=config.s3)
        self.position = StreamPosition()
        self.tally = DataTally()
        self._items: Iterator[DataItem | BadData] | None = None

    def _new_epoch_items(self) -> Iterator[DataItem | BadData]:
        stream = Sa1bStream(
            self.config.data,
            self.units,
            self.stream_config,
            rank=self.rank,
            world_size=self.world,
            s3=self.config.s3,
            position=StreamPosition(self.position.epoch, dict(self.position.consumed)),
        )
        return iter(make_loader(stream, num_workers=self.config.num_workers))

    def _next_item(self) -> DataItem:
        empty_epochs = 0
        while True:
            if self._items is None:
                self._items = self._new_epoch_items()
            item = next(self._items, None)
            if item is None:
                empty_epochs = empty_epochs + 1 if not self.position.consumed else 0
                if empty_epochs > 1:
                    raise RuntimeError(f"no readable training samples in {self.config.data}")
                self.position = StreamPosition(self.position.epoch + 1)
                self._items = None
                continue
            self.tally.count(item)
            if isinstance(item, BadData):
                continue
            self.position.advance(item)
            return item

    def next_step(self) -> list[list[PromptedSample]]:
        """`grad_accum` micro-batches of `images_per_batch` samples."""
        per = self.config.images_per_batch
        return [
            [self._next_item().sample for _ in range(per)] for _ in range(self.config.grad_accum)
        ]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def _teacher_cache(config: TrainConfig, device: torch.device) -> TeacherCache | None:
    if config.distill_teacher is None:
        return None
    encoder, checksum = load_teacher(config.distill_teacher, device, config=config.teacher_config)
    url = config.teacher_cache or str(config.output / "teacher-cache")
    return TeacherCache(open_store(url, s3=config.s3), encoder, checksum)


class _Run:
    """State of one process's run: model, optimiser, scheduler, data and step."""

    def __init__(
        self, config: TrainConfig, on_checkpoint: Callable[[int], None] | None = None
    ) -> None:
        self.config, self.on_checkpoint = config, on_checkpoint
        self.rank, self.world, self.device = distributed_env(config.device)
        _seed_everything(config.seed + self.rank)
        spec = get_spec(config.model_name, family="segmenter")
        self.model = create_model(
            config.model_name,
            family="segmenter",
            checkpoint_path=config.checkpoint,
            device=self.device,
        )
        self.model.train()
        freeze = config.checkpoint is not None if config.freeze_bn is None else config.freeze_bn
        if freeze:
            freeze_batch_norm_stats(self.model)
        self.teacher = _teacher_cache(config, self.device)
        module: torch.nn.Module = (
            SamTrainingModule(self.model)
            if self.teacher is None
            else EncoderDistillModule(self.model)
        )
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)
        self.module = module
        lr = config.lr if config.lr is not None else paper_learning_rate(config.model_name)
        self.optimizer = build_optimizer(self.model, lr=lr, weight_decay=config.weight_decay)
        self.scheduler = cosine_schedule(
            self.optimizer,
            total_steps=config.schedule_steps or config.max_steps,
            warmup_steps=config.warmup_steps,
        )
        stream = StreamConfig(
            input_size=spec.input_size,
            max_masks=config.max_masks,
            seed=config.seed,
            teacher_input_size=None if self.teacher is None else config.teacher_config.img_size,
        )
        self.batches = _Batches(config, stream, self.rank, self.world)
        self.bf16 = bf16_supported(self.device) if config.bf16 is None else config.bf16
        self.step = 0
        self.checkpoint_path = config.output / "checkpoints" / CHECKPOINT_NAME

    def resume(self) -> None:
        """Load `last.pt` when it exists (and `config.resume`)."""
        if not (self.config.resume and self.checkpoint_path.is_file()):
            return
        state = load_training_state(self.checkpoint_path)
        if len(state["ranks"]) != self.world:
            raise RuntimeError(
                f"checkpoint {self.checkpoint_path} was written by {len(state['ranks'])} "
                f"processes, expected {self.world}"
            )
        self.model.load_state_dict(state["model"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        mine = state["ranks"][self.rank]
        self.batches.position = StreamPosition.from_dict(mine["position"])
        self.batches.tally = DataTally.from_dict(mine.get("data", {}))
        restore_rng(mine["rng"])
        log.info("resumed from %s at step %d", self.checkpoint_path, self.step)

    def save(self) -> None:
        """Checkpoint (all ranks contribute their position and RNG; rank 0 writes)."""
        mine = {
            "position": self.batches.position.to_dict(),
            "data": self.batches.tally.to_dict(),
            "rng": capture_rng(),
        }
        ranks = gather(mine, self.world)
        if self.rank == 0:
            meta = {"model_name": self.config.model_name, "world_size": self.world}
            save_training_state(
                self.checkpoint_path,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                step=self.step,
                ranks=ranks,
                meta=meta,
            )
            if self.on_checkpoint is not None:
                self.on_checkpoint(self.step)
        if self.world > 1:
            dist.barrier()

    def train_one_step(self) -> StepResult:
        """One optimiser step of the configured stage (end-to-end or distillation)."""
        batches = self.batches.next_step()
        if self.teacher is None:
            return train_step(
                self.module,
                self.optimizer,
                batches,
                clip_norm=self.config.clip_norm,
                bf16=self.bf16,
                single_weight=self.config.single_weight,
            )
        pairs = [
            (
                torch.stack([item.sample.image for item in batch]),
                self.teacher.embeddings([item.sample for item in batch]),
            )
            for batch in batches
        ]
        return distill_step(
            self.module, self.optimizer, pairs, clip_norm=self.config.clip_norm, bf16=self.bf16
        )

    def log_step(self, loss: float, mask_loss: float, iou_loss: float) -> None:
        if self.rank != 0:
            return
        row = {
            "step": self.step,
            "loss": loss,
            "mask_loss": mask_loss,
            "iou_loss": iou_loss,
            "lr": self.scheduler.get_last_lr()[0],
            "epoch": self.batches.position.epoch,
        }
        with (self.config.output / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metric lines after `step` (left by a run killed after its last checkpoint)."""
    if not path.is_file():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in rows if json.loads(r)["step"] <= step]
    path.write_text("".join(r + "\n" for r in kept))


def _count_data(run: _Run, result: TrainResult) -> None:
    """Samples used and bad items skipped over all ranks (and all processes of the run)."""
    total = DataTally()
    for tally in gather(run.batches.tally.to_dict(), run.world):
        total.merge(DataTally.from_dict(tally))
    result.samples_used, result.samples_skipped = total.used, total.skipped
    result.bad_data = [BadData(name=name, reason=reason) for name, reason in total.bad.items()]


def _finish(run: _Run, result: TrainResult) -> None:
    if run.rank == 0:
        meta = {
            "steps": run.step,
            "world_size": run.world,
            "data": run.config.data,
            "config": {k: str(v) for k, v in asdict(run.config).items()},
        }
        path = run.config.output / "model.pt"
        result.sha256 = save_trained_weights(run.model, run.config.model_name, meta, path)
        result.weights = path


def run_training(
    config: TrainConfig, *, on_checkpoint: Callable[[int], None] | None = None
) -> TrainResult:
    """Train (or resume) until `config.max_steps` steps are done or SIGTERM arrives.

    Args:
        config: The run.
        on_checkpoint: Called on rank 0 with the step after each checkpoint is written (the
            other ranks wait); the output folder then holds it and the metrics lines up to it.

    Returns:
        The result of this process (losses are the step means over all ranks).

    Raises:
        RuntimeError: the data holds no readable sample, or a checkpoint from another world size.
        ModelError, StorageError: bad model name/weights or unreadable source listing.
    """
    if config.max_steps < 1 or config.images_per_batch < 1 or config.grad_accum < 1:
        raise ValueError(
            f"expected max_steps, images_per_batch and grad_accum >= 1, got {config.max_steps}, "
            f"{config.images_per_batch}, {config.grad_accum}"
        )
    config.output.mkdir(parents=True, exist_ok=True)
    run = _Run(config, on_checkpoint)
    run.resume()
    if run.rank == 0:
        _trim_metrics(config.output / "metrics.jsonl", run.step)
    stop = StopFlag()
    stop.install()
    result = TrainResult(step=run.step, start_step=run.step, world_size=run.world)
    try:
        while run.step < config.max_steps:
            out = run.train_one_step()
            run.scheduler.step()
            run.step += 1
            loss = mean_over_ranks(out.loss, run.world, run.device)
            result.losses.append(loss)
            run.log_step(
                loss,
                mean_over_ranks(out.mask_loss, run.world, run.device),
                mean_over_ranks(out.iou_loss, run.world, run.device),
            )
            stopping = any_rank(stop.requested, run.world, run.device)
            if stopping or run.step % config.checkpoint_every == 0 or run.step == config.max_steps:
                run.save()
            if stopping:
                result.interrupted = True
                break
        result.step = run.step
        _count_data(run, result)
        if run.teacher is not None:
            result.teacher_hits = run.teacher.stats.hits
            result.teacher_misses = run.teacher.stats.misses
        if not result.interrupted:
            _finish(run, result)
    finally:
        stop.uninstall()
    return result


__all__ = ["TrainConfig", "TrainResult", "run_training", "shutdown_distributed"]
