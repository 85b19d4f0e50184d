"""Process-group plumbing of the trainer: torchrun environment, collectives, SIGTERM flag."""

import io
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

import torch
from torch import distributed as dist

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGTERM; checked (and agreed over ranks) after every step."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        log.warning("signal %d received: checkpointing after the current step", signum)
        self.requested = True


def rank_device(device: str, *, world: int, local_rank: int, cuda_available: bool) -> str:
    """The device of one training process: `cuda:<local rank>` under torchrun on CUDA, the
    configured GPU (`cuda:N`, `cuda` = `cuda:0`) for a single process, else `cpu`."""
    use_cuda = device.startswith("cuda") or (device == "auto" and cuda_available)
    if not use_cuda:
        return "cpu"
    if world > 1:
        return f"cuda:{local_rank}"
    return device if ":" in device else "cuda:0"


def distributed_env(device: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    name = rank_device(
        device, world=world, local_rank=local, cuda_available=torch.cuda.is_available()
    )
    dev = torch.device(name)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return rank, world, dev


def gather(obj: Any, world: int) -> list[Any]:
    """Every rank's `obj` (tensors included), in rank order."""
    if world == 1:
        return [obj]
    buf = io.BytesIO()
    torch.save(obj, buf)  # pickled tensors do not survive all_gather_object's unpickler
    out: list[Any] = [None] * world
    dist.all_gather_object(out, buf.getvalue())
    return [torch.load(io.BytesIO(data), weights_only=True) for data in out]


def mean_over_ranks(value: float, world: int, device: torch.device) -> float:
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / world


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def shutdown_distributed() -> None:
    """Leave the process group if one was joined (call once at the end of a torchrun entry)."""
    if dist.is_initialized():
        dist.destroy_process_group()
