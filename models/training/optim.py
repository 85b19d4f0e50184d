"""AdamW with the paper's settings and a cosine decay to 0.

Weight decay 0.1 applies to every weight except those of normalisation layers, biases and other
1-d parameters (convolution, linear and SAM's prompt-embedding weights decay).
"""

import math

import torch
from torch import nn

from autolabel.models.errors import InvalidInputError

#: Peak learning rates from the paper, by model family.
PAPER_LR = {"l": 2e-6, "xl": 1e-6}
BETAS = (0.9, 0.999)
WEIGHT_DECAY = 0.1
GRAD_CLIP_NORM = 2.0
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def paper_learning_rate(model_name: str) -> float:
    """2e-6 for EfficientViT-SAM-L*, 1e-6 for XL* (and 2e-6 for other names)."""
    family = "xl" if "-xl" in model_name else "l"
    return PAPER_LR[family]


def _no_decay_names(model: nn.Module) -> set[str]:
    names: set[str] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, _NORMS) or type(module).__name__.endswith("LayerNorm2d")
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or param.ndim <= 1:
                names.add(full)
    return names


def parameter_groups(
    model: nn.Module, *, weight_decay: float = WEIGHT_DECAY
) -> list[dict[str, object]]:
    """Two AdamW groups: `decay` (>= 2-d weights) and `no_decay` (norms, biases, 1-d).

    Only parameters with `requires_grad` are included; order follows `named_parameters()`.
    """
    skip = _no_decay_names(model)
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name in skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
    ]


def build_optimizer(
    model: nn.Module, *, lr: float, weight_decay: float = WEIGHT_DECAY
) -> torch.optim.AdamW:
    """AdamW(betas=(0.9, 0.999)) over `parameter_groups(model)`."""
    if lr <= 0:
        raise InvalidInputError(f"expected a positive learning rate, got {lr}")
    groups = parameter_groups(model, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS)


def cosine_factor(step: int, total_steps: int, *, warmup_steps: int = 0) -> float:
    """LR multiplier at optimiser step `step`: linear warm-up, then cosine from 1 to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_schedule(
    optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A `LambdaLR` that decays every group's LR to 0 over `total_steps` optimiser steps."""
    if total_steps < 1:
        raise InvalidInputError(f"expected total_steps >= 1, got {total_steps}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: cosine_factor(step, total_steps, warmup_steps=warmup_steps)
    )
