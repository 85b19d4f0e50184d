"""save_trained_weights writes the registry format that create_model loads strictly."""

from pathlib import Path

import pytest
import torch

from autolabel.models.errors import CheckpointMismatchError
from autolabel.models.registry import create_model
from autolabel.models.training.trained_weights import save_trained_weights
from autolabel.models.weight_files import sha256_of


def test_round_trip_through_create_model(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model = create_model("efficientvit-sam-test")
    path = tmp_path / "sub" / "trained.pt"
    digest = save_trained_weights(model, "efficientvit-sam-test", {"steps": 5}, path)
    assert digest == sha256_of(path)
    loaded = create_model("efficientvit-sam-test", checkpoint_path=path, expected_sha256=digest)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    raw = torch.load(path, weights_only=True)
    assert raw["spec"] == {"name": "efficientvit-sam-test"}
    assert raw["meta"] == {"steps": 5}


def test_loading_under_another_name_is_refused(tmp_path: Path) -> None:
    model = create_model("efficientvit-sam-test")
    path = tmp_path / "w.pt"
    save_trained_weights(model, "efficientvit-sam-test", {}, path)
    with pytest.raises(CheckpointMismatchError):
        create_model("efficientvit-sam-l0", checkpoint_path=path)
