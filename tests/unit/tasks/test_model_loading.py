"""Random weights for smoke runs: the same in every process and thread, whatever the global torch
RNG holds, which is never seeded here."""

import threading
from pathlib import Path

import torch
from sqlalchemy.engine import make_url

from autolabel.storage.config import S3Config
from autolabel.tasks.model_loading import load_segmenter, seeded_random_weights
from autolabel.tasks.resources import ResourceConfig, Resources

NAME = "efficientvit-sam-test"


def resources(tmp_path: Path) -> Resources:
    config = ResourceConfig(
        database_url=make_url(f"sqlite:///{tmp_path / 'db.sqlite'}"),
        s3=S3Config(),
        weights_dir=tmp_path,
    )
    return Resources(config)


def test_seeded_random_weights_neither_seed_nor_read_the_global_rng() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Conv2d(3, 2, 3))
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    seeded_random_weights(model, "x")
    assert torch.equal(torch.random.get_rng_state(), before)
    assert model[0].weight.std() > 0
    assert float(model[1].weight.detach().abs().max()) <= 1 / 27**0.5  # fan_in = 3 * 3 * 3


def test_random_weights_are_the_same_whatever_the_global_rng_did(tmp_path: Path) -> None:
    results: list[dict[str, torch.Tensor]] = []

    def load(seed: int) -> None:
        torch.manual_seed(seed)  # a different global state in each thread's turn
        model = load_segmenter(NAME, resources(tmp_path), random_weights=True)
        results.append({k: v.clone() for k, v in model.state_dict().items()})

    for seed in (0, 99):
        thread = threading.Thread(target=load, args=(seed,))
        thread.start()
        thread.join()
    first, second = results
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_constant_initialisations_are_kept() -> None:
    layer = torch.nn.LayerNorm(8)
    linear = torch.nn.Linear(8, 4)
    seeded_random_weights(torch.nn.Sequential(layer, linear), "x")
    assert torch.equal(layer.weight, torch.ones(8))
    assert torch.equal(layer.bias, torch.zeros(8))
    assert linear.weight.std() > 0
