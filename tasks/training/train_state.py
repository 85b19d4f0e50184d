"""Training checkpoints for exact resume: model, optimizer, scheduler, step, data, RNG.

A checkpoint is one file `<output>/checkpoints/last.pt` (written to a temporary file and
renamed) holding plain tensors and containers, so it loads with `weights_only=True`. Data
positions and RNG states are stored per rank, so a DDP run resumes every rank where it was.
"""

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_NAME = "last.pt"


def capture_rng() -> dict[str, Any]:
    """RNG states of python, numpy (legacy global) and torch (CPU and CUDA), as plain data."""
    name, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)  # noqa: NPY002
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(np.asarray(key).copy()), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of `capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, key, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, key.numpy(), pos, has_gauss, cached))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(
    path: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    ranks: list[dict[str, Any]],
    meta: Mapping[str, Any],
) -> Path:
    """Write a resumable checkpoint atomically.

    Args:
        path: Destination file.
        model: The unwrapped model.
        optimizer, scheduler: Their state dicts are saved.
        step: Optimiser steps done.
        ranks: Per rank `{"position": StreamPosition.to_dict(), "rng": capture_rng()}`.
        meta: Plain data describing the run (model name, config, ...).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "ranks": ranks,
        "meta": dict(meta),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_training_state` (weights-only unpickler)."""
    loaded: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return loaded
