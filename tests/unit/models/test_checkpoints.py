"""Checkpoint loading through the registry: wrappers, prefixes, checksums and strictness."""

import hashlib
from pathlib import Path

import pytest
import torch

from autolabel.models.checkpoints import load_checkpoint, save_checkpoint
from autolabel.models.errors import (
    CheckpointError,
    CheckpointMismatchError,
    ChecksumMismatchError,
    UnknownModelError,
    WeightsUnavailableError,
)
from autolabel.models.registry import MODEL_SPECS, create_model, get_spec

TEST_MODEL = "efficientvit-sam-test"


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return get_spec(TEST_MODEL).build().state_dict()


def save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def assert_same_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    assert list(got) == list(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_plain_state_dict_loads_strictly_in_eval_mode(
    tmp_path: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    model = create_model(TEST_MODEL, checkpoint_path=save(state_dict, tmp_path / "w.pt"))
    assert not model.training
    assert_same_weights(model, state_dict)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"model": sd},
        lambda sd: {"state_dict": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"model": {f"_orig_mod.{k}": v for k, v in sd.items()}},
        lambda sd: {"model": sd, "spec": TEST_MODEL, "meta": {"epoch": 3, "note": "retrained"}},
    ],
    ids=["model", "state_dict", "module-prefix", "orig-mod-prefix", "retrained"],
)
def test_wrappers_and_prefixes_are_unwrapped(
    tmp_path: Path, state_dict: dict[str, torch.Tensor], wrap: object
) -> None:
    assert callable(wrap)
    model = create_model(TEST_MODEL, checkpoint_path=save(wrap(state_dict), tmp_path / "w.pt"))
    assert_same_weights(model, state_dict)


def test_retrained_checkpoint_for_another_model_is_rejected(
    tmp_path: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    path = save({"model": state_dict, "spec": {"name": "efficientvit-sam-l1"}}, tmp_path / "w.pt")
    with pytest.raises(CheckpointMismatchError, match="efficientvit-sam-l1"):
        create_model(TEST_MODEL, checkpoint_path=path)


def test_wrong_sha256_is_rejected_with_expected_and_got(
    tmp_path: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    path = save(state_dict, tmp_path / "w.pt")
    got = hashlib.sha256(path.read_bytes()).hexdigest()
    wrong = "0" * 64
    with pytest.raises(ChecksumMismatchError) as info:
        create_model(TEST_MODEL, checkpoint_path=path, expected_sha256=wrong)
    assert wrong in str(info.value)
    assert got in str(info.value)
    model = create_model(TEST_MODEL, checkpoint_path=path, expected_sha256=got)
    assert_same_weights(model, state_dict)


def test_official_filename_is_checked_against_the_pinned_sha256(tmp_path: Path) -> None:
    spec = MODEL_SPECS["efficientvit-sam-l0"]
    assert spec.weights.sha256 is not None
    path = tmp_path / spec.weights.filename
    path.write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatchError, match=spec.weights.sha256):
        create_model("efficientvit-sam-l0", checkpoint_path=path)
    # Opting out skips the digest; the bytes are then rejected as unloadable.
    with pytest.raises(CheckpointError, match="could not load"):
        create_model("efficientvit-sam-l0", checkpoint_path=path, verify_sha256=False)


def test_missing_key_is_named(tmp_path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    key = "image_encoder.neck.output_ops.0.op_list.0.conv.bias"
    tampered = {k: v for k, v in state_dict.items() if k != key}
    with pytest.raises(CheckpointMismatchError, match="1 missing keys") as info:
        create_model(TEST_MODEL, checkpoint_path=save(tampered, tmp_path / "w.pt"))
    assert key in str(info.value)


def test_unexpected_key_is_named(tmp_path: Path, state_dict: dict[str, torch.Tensor]) -> None:
    tampered = {**state_dict, "image_encoder.extra.weight": torch.zeros(3)}
    with pytest.raises(CheckpointMismatchError, match="1 unexpected keys") as info:
        create_model(TEST_MODEL, checkpoint_path=save(tampered, tmp_path / "w.pt"))
    assert "image_encoder.extra.weight" in str(info.value)


def test_wrong_shape_is_named_with_both_shapes(
    tmp_path: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    key = "mask_decoder.iou_token.weight"
    tampered = {**state_dict, key: torch.zeros(2, 128)}
    with pytest.raises(CheckpointMismatchError) as info:
        create_model(TEST_MODEL, checkpoint_path=save(tampered, tmp_path / "w.pt"))
    message = str(info.value)
    assert key in message
    assert "expected (1, 256), got (2, 128)" in message


def test_many_missing_keys_are_capped_at_ten(tmp_path: Path) -> None:
    model = get_spec(TEST_MODEL).build()
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(model, save({"a": torch.zeros(1)}, tmp_path / "w.pt"))
    message = str(info.value)
    missing = len(model.state_dict())
    assert f"{missing} missing keys" in message
    assert f"(+{missing - 10} more)" in message
    assert "1 unexpected keys: ['a']" in message


def test_missing_file_and_non_dict_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match=r"nope\.pt"):
        create_model(TEST_MODEL, checkpoint_path=tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="expected a dict checkpoint"):
        create_model(TEST_MODEL, checkpoint_path=save(torch.zeros(3), tmp_path / "t.pt"))
    with pytest.raises(CheckpointError, match="non-tensor entries"):
        create_model(TEST_MODEL, checkpoint_path=save({"a": 1}, tmp_path / "n.pt"))


def test_unknown_model_lists_sorted_names() -> None:
    with pytest.raises(UnknownModelError) as info:
        create_model("efficientvit-sam-l9")
    names = sorted(MODEL_SPECS)  # every family: segmenters, test variants and detectors
    assert {TEST_MODEL, "efficientvit-sam-l0", "grounding-dino-swint-ogc"} <= set(names)
    assert str(names) in str(info.value)
    assert isinstance(info.value, LookupError)


def test_save_checkpoint_round_trips_with_meta(
    tmp_path: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    model = get_spec(TEST_MODEL).build()
    model.load_state_dict(state_dict)
    path = save_checkpoint(model, tmp_path / "r.pt", model_name=TEST_MODEL, meta={"epoch": 2})
    assert not (tmp_path / "r.pt.tmp").exists()
    fresh = get_spec(TEST_MODEL).build()
    checkpoint = load_checkpoint(fresh, path, expected_name=TEST_MODEL)
    assert checkpoint["meta"] == {"epoch": 2}
    assert_same_weights(fresh, state_dict)
    with pytest.raises(CheckpointMismatchError, match="efficientvit-sam-l0"):
        load_checkpoint(fresh, path, expected_name="efficientvit-sam-l0")
