"""One optimiser step: gradient accumulation is the mean over micro-batches; BN stats frozen."""

import copy

import numpy as np
import pytest
import torch

from autolabel.models.registry import create_model
from autolabel.models.training.step import (
    PromptedSample,
    SamTrainingModule,
    freeze_batch_norm_stats,
    train_step,
)
from autolabel.tasks.training.data import StreamConfig, decode_sample
from tests.synthetic import synthetic_sample


def _samples(n: int) -> list[PromptedSample]:
    config = StreamConfig(input_size=128, max_masks=1)
    out = []
    for i in range(40):
        raw = synthetic_sample(np.random.default_rng(i), i + 1, height=64, width=80)
        prepared = decode_sample(raw, config, np.random.default_rng(100 + i))
        if prepared is not None and len(prepared.sample.masks) == 1:
            out.append(prepared)
        if len(out) == n:
            return out
    raise AssertionError("not enough synthetic samples with a mask")


def _module() -> SamTrainingModule:
    torch.manual_seed(0)
    model = create_model("efficientvit-sam-test")
    model.train()
    freeze_batch_norm_stats(model)
    return SamTrainingModule(model)


def _delta_after_step(
    module: SamTrainingModule, batches: list[list[PromptedSample]]
) -> list[torch.Tensor]:
    before = [p.detach().clone() for p in module.parameters()]
    opt = torch.optim.SGD(module.parameters(), lr=1.0)
    train_step(module, opt, batches, clip_norm=1e9)
    return [p.detach() - b for p, b in zip(module.parameters(), before, strict=True)]


def test_accumulating_two_micro_batches_equals_one_batch_of_two() -> None:
    a, b = _samples(2)
    base = _module()
    accumulated = _delta_after_step(copy.deepcopy(base), [[a], [b]])
    joint = _delta_after_step(copy.deepcopy(base), [[a, b]])
    for x, y in zip(accumulated, joint, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)
    assert any(x.abs().sum() > 0 for x in joint)


def test_gradients_are_clipped_and_batch_norm_statistics_kept() -> None:
    module = _module()
    stats = {k: v.clone() for k, v in module.state_dict().items() if "running_" in k}
    assert stats
    opt = torch.optim.SGD(module.parameters(), lr=0.0)
    out = train_step(module, opt, [_samples(1)], clip_norm=1e-3)
    for k, v in stats.items():
        assert torch.equal(module.state_dict()[k], v), k
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    total = torch.sqrt(torch.stack([(g**2).sum() for g in grads]).sum())
    assert out.grad_norm > 1e-3
    assert float(total) == pytest.approx(1e-3, rel=1e-3)
