"""Parameter groups without weight decay on norms and biases; cosine schedule to 0."""

import math

import pytest
import torch
from torch import nn

from autolabel.models.registry import create_model
from autolabel.models.training.optim import (
    build_optimizer,
    cosine_factor,
    cosine_schedule,
    paper_learning_rate,
    parameter_groups,
)


def test_norms_and_biases_have_no_weight_decay() -> None:
    model = create_model("efficientvit-sam-test")
    decay, no_decay = parameter_groups(model)
    assert decay["weight_decay"] == 0.1
    assert no_decay["weight_decay"] == 0.0
    decay_ids = {id(p) for p in decay["params"]}  # type: ignore[attr-defined]
    no_ids = {id(p) for p in no_decay["params"]}  # type: ignore[attr-defined]
    assert not decay_ids & no_ids
    assert decay_ids | no_ids == {id(p) for p in model.parameters()}
    for name, module in model.named_modules():
        is_norm = isinstance(module, nn.BatchNorm2d | nn.LayerNorm) or type(
            module
        ).__name__.endswith("LayerNorm2d")
        for pname, p in module.named_parameters(recurse=False):
            if is_norm or pname == "bias":
                assert id(p) in no_ids, f"{name}.{pname} should not decay"
            elif p.ndim >= 2:
                assert id(p) in decay_ids, f"{name}.{pname} should decay"


def test_paper_learning_rates_and_adamw_betas() -> None:
    assert paper_learning_rate("efficientvit-sam-l0") == 2e-6
    assert paper_learning_rate("efficientvit-sam-xl1") == 1e-6
    opt = build_optimizer(nn.Linear(2, 2), lr=2e-6)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.999)


def test_cosine_decays_from_peak_to_zero() -> None:
    assert cosine_factor(0, 10) == 1.0
    assert cosine_factor(5, 10) == pytest.approx(0.5)
    assert cosine_factor(10, 10) == pytest.approx(0.0)
    assert cosine_factor(0, 10, warmup_steps=2) == 0.5
    opt = build_optimizer(nn.Linear(2, 2), lr=1.0)
    sched = cosine_schedule(opt, total_steps=4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert lrs == pytest.approx(expected)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)
