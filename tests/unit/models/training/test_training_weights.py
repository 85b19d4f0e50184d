"""save_trained_weights writes the registry format that build_model loads strictly."""

from pathlib import Path

import pytest
import torch

from autolabel.models.errors import CheckpointMismatchError
from autolabel.models.registry import build_model
from autolabel.models.training.weights import save_trained_weights
from autolabel.models.weights import sha256_of


def test_round_trip_through_build_model(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = build_model("efficientvit-sam-test")
    path = tmp_path / "sub" / "trained.pt"
    digest = save_trained_weights(model, "efficientvit-sam-test", {"steps": 5}, path)
    assert digest == sha256_of(path)
    loaded = build_model("efficientvit-sam-test", path, expected_sha256=digest)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    raw = torch.load(path, weights_only=True)
    assert raw["spec"] == {"name": "efficientvit-sam-test"}
    assert raw["meta"] == {"steps": 5}


def test_loading_under_another_name_is_refused(tmp_path: Path) -> None:
    model = build_model("efficientvit-sam-test")
    path = tmp_path / "w.pt"
    save_trained_weights(model, "efficientvit-sam-test", {}, path)
    with pytest.raises(CheckpointMismatchError):
        build_model("efficientvit-sam-l0", path)
