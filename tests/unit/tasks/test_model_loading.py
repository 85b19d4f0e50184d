"""Random weights for smoke runs: the same in every process and thread, whatever the global torch
RNG holds, which is never seeded here; released weights without a pinned digest are proven
loadable when a run resolves them."""

import os
import re
import threading
from pathlib import Path

import pytest
import torch
from sqlalchemy.engine import make_url

from autolabel.models.errors import CheckpointError
from autolabel.models.registry import get_spec
from autolabel.models.weight_files import sha256_of
from autolabel.storage.config import S3Config
from autolabel.storage.weight_ledger import WeightLedger
from autolabel.tasks.model_loading import (
    detector_version,
    load_segmenter,
    resolve_segmenter,
    seeded_random_weights,
)
from autolabel.tasks.resources import ResourceConfig, Resources

NAME = "efficientvit-sam-test"
DETECTOR = "grounding-dino-swint-ogc"
UNPINNED_SEGMENTER = "efficientvit-sam-xl1"


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


def test_a_bad_unpinned_detector_file_stops_the_run_start(tmp_path: Path) -> None:
    """`detector_version` runs when a label run starts, before any image is registered: random
    bytes under the released (unpinned) filename raise a one-line CheckpointError there, the
    database is never opened, and the digest seen is recorded in the ledger."""
    path = tmp_path / "groundingdino_swint_ogc.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as error:
        detector_version(DETECTOR, resources(tmp_path), random_weights=False)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "db.sqlite").exists()
    entry = WeightLedger(tmp_path).entries()[path.name]
    assert (entry.sha256, entry.layout_verified) == (sha256_of(path), {})
    # Random-weights runs never read the file.
    assert detector_version(DETECTOR, resources(tmp_path), random_weights=True) == (
        f"{DETECTOR}@random"
    )


def test_a_bad_unpinned_segmenter_file_fails_to_resolve(tmp_path: Path) -> None:
    spec = get_spec(UNPINNED_SEGMENTER, family="segmenter")
    assert spec.weights is not None
    assert spec.weights.sha256 is None
    path = tmp_path / spec.weights.filename
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        resolve_segmenter(UNPINNED_SEGMENTER, resources(tmp_path), random_weights=False)


def test_a_digest_proven_before_is_not_loaded_again(tmp_path: Path) -> None:
    """The ledger caches the layout proof per digest: a file whose digest it records as verified
    for the model resolves without a load (these bytes would fail one), and a new digest is
    loaded again."""
    spec = get_spec(UNPINNED_SEGMENTER, family="segmenter")
    assert spec.weights is not None
    path = tmp_path / spec.weights.filename
    path.write_bytes(b"bytes proven earlier")
    ledger = WeightLedger(tmp_path)
    ledger.record(path, sha256=sha256_of(path))
    ledger.record_layout(
        path.name, sha256=sha256_of(path), model_name=UNPINNED_SEGMENTER, tensors=701
    )
    weights = resolve_segmenter(UNPINNED_SEGMENTER, resources(tmp_path), random_weights=False)
    assert weights.version == f"{UNPINNED_SEGMENTER}@{sha256_of(path)[:16]}"
    assert weights.path == path
    path.write_bytes(b"other bytes")
    with pytest.raises(CheckpointError):
        resolve_segmenter(UNPINNED_SEGMENTER, resources(tmp_path), random_weights=False)
