"""One rank of a training run in several processes: `python -m autolabel.tasks.training.rank_entry
SPEC.json`, started by torchrun (`torchrun_launch` builds the command line and the spec).

Each rank runs the same trainer as `autolabel train` (`run_training`: gloo on CPU, nccl on CUDA,
resuming from `<output>/checkpoints/last.pt` when it exists). Rank 0 uploads the metrics and each
checkpoint to the training's store folder as they are written (`training_folder.upload_state`)
and, once finished, writes the result to the spec's `result_path` (JSON, `result_to_json`).

A rank never outlives what launched it: it dies with the torchrun agent (Linux
`PR_SET_PDEATHSIG`), and with `watch_stdin` it checkpoints and stops (as on SIGTERM) when its
standard input, a pipe from the flow process, reaches end of file: the flow process is gone, or
has stopped waiting for it. A failing rank writes one line `training failed: rank R: <error>` to
stderr (the launcher quotes it) before its traceback; an interrupted one exits with code 143.
"""

import ctypes
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from autolabel.models.training.distill import VitConfig
from autolabel.storage.config import S3Config
from autolabel.storage.objectstore import open_store
from autolabel.storage.sa1b import BadSample
from autolabel.tasks.training.distributed import shutdown_distributed
from autolabel.tasks.training.train_config import TrainConfig, TrainResult
from autolabel.tasks.training.trainer import run_training
from autolabel.tasks.training.training_folder import upload_state

log = logging.getLogger("autolabel.tasks.training.rank_entry")  # also when run as __main__

FAILURE_PREFIX = "training failed: "
INTERRUPTED_EXIT_CODE = 143  # 128 + SIGTERM, as `autolabel train`
_PATH_FIELDS = ("output", "checkpoint", "distill_teacher")
_PR_SET_PDEATHSIG = 1


class RankSpec(BaseModel):
    """What every rank of one run is asked to do (written by the launcher as JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: dict[str, Any] = Field(description="`TrainConfig` fields (`encode_config`).")
    sync_url: str | None = Field(None, description="Store folder rank 0 uploads checkpoints to.")
    result_path: str = Field(description="Where rank 0 writes the result JSON when finished.")
    watch_stdin: bool = Field(True, description="Stop when standard input reaches end of file.")


def encode_config(config: TrainConfig) -> dict[str, Any]:
    """`config` as JSON-ready fields (paths as strings); `decode_config` inverts it."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for name in _PATH_FIELDS:
        fields[name] = None if fields[name] is None else str(fields[name])
    fields["s3"] = None if config.s3 is None else config.s3.model_dump(mode="json")
    fields["teacher_config"] = dataclasses.asdict(config.teacher_config)
    return fields


def decode_config(fields: dict[str, Any]) -> TrainConfig:
    """The `TrainConfig` of `encode_config`'s fields."""
    values = dict(fields)
    for name in _PATH_FIELDS:
        values[name] = None if values[name] is None else Path(values[name])
    values["s3"] = None if values["s3"] is None else S3Config.model_validate(values["s3"])
    teacher = dict(values["teacher_config"])
    teacher["global_attn_indexes"] = tuple(teacher["global_attn_indexes"])
    values["teacher_config"] = VitConfig(**teacher)
    return TrainConfig(**values)


def result_to_json(result: TrainResult) -> str:
    """A `TrainResult` as one JSON object (`result_from_json` inverts it)."""
    fields = dataclasses.asdict(result)
    fields["weights"] = None if result.weights is None else str(result.weights)
    fields["bad_data"] = [{"name": b.name, "reason": b.reason} for b in result.bad_data]
    return json.dumps(fields)


def result_from_json(text: str) -> TrainResult:
    """The `TrainResult` of `result_to_json`'s text."""
    fields = json.loads(text)
    fields["weights"] = None if fields["weights"] is None else Path(fields["weights"])
    fields["bad_data"] = [BadSample(name=b["name"], reason=b["reason"]) for b in fields["bad_data"]]
    return TrainResult(**fields)


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent (the torchrun agent) dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _watch_stdin() -> None:
    """SIGTERM this process (checkpoint, then stop) once standard input reaches end of file."""

    def watch() -> None:
        while os.read(0, 4096):
            pass
        log.warning("the process that launched this training is gone: stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _write_result(path: Path, result: TrainResult) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(result_to_json(result))
    part.replace(path)


def run_rank(spec: RankSpec, rank: int) -> int:
    """Train this rank's share of `spec`; returns the process exit code (0, or 143 when
    interrupted); an error is reported in one line on stderr, then raised."""
    config = decode_config(spec.config)
    store = open_store(spec.sync_url, s3=config.s3) if spec.sync_url and rank == 0 else None
    try:
        result = run_training(
            config,
            on_checkpoint=None if store is None else (lambda _: upload_state(store, config.output)),
        )
    except BaseException as exc:
        sys.stderr.write(f"{FAILURE_PREFIX}rank {rank}: {_first_line(exc)}\n")
        raise
    finally:
        shutdown_distributed()
    if result.interrupted:
        sys.stderr.write(
            f"{FAILURE_PREFIX}rank {rank}: interrupted at step {result.step} (checkpoint written)\n"
        )
        return INTERRUPTED_EXIT_CODE
    if rank == 0:
        _write_result(Path(spec.result_path), result)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry of one rank: `rank_entry SPEC.json` (torchrun sets RANK, WORLD_SIZE, ...)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m autolabel.tasks.training.rank_entry SPEC.json\n")
        return 2
    _die_with_parent()
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO,
        format=f"rank {rank} %(levelname)s %(name)s: %(message)s",  # the launcher adds the time
        stream=sys.stderr,
    )
    spec = RankSpec.model_validate_json(Path(args[0]).read_text())
    if spec.watch_stdin:
        _watch_stdin()
    log.info("rank %d of %s on %s", rank, os.environ.get("WORLD_SIZE", "1"), spec.config["data"])
    return run_rank(spec, rank)


if __name__ == "__main__":
    raise SystemExit(main())
