"""`verify_layout`: a weights file is proven loadable into its architecture (keys and shapes,
architecture on the meta device) without building weights, for both model families, on the
small `-test` architectures."""

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from autolabel.models.errors import CheckpointError, CheckpointMismatchError
from autolabel.models.grounding_dino import build_detector, save_state_dict, tiny_test_config
from autolabel.models.registry import create_model, get_spec, verify_layout
from tests.unit.models.original_layout import original_state_dict, write_original_checkpoint

SEGMENTER = "efficientvit-sam-test"
DETECTOR = "grounding-dino-test"


@pytest.fixture(scope="module")
def segmenter_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return get_spec(SEGMENTER).build().state_dict()


@pytest.fixture(scope="module")
def detector_original() -> dict[str, torch.Tensor]:
    return original_state_dict(tiny_test_config())


def assert_one_line_naming(error: pytest.ExceptionInfo[CheckpointError], path: Path) -> str:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.fixture
def no_real_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if an architecture is built with real (non-meta) weights."""
    real_linear = torch.nn.Linear.__init__

    def linear(self: torch.nn.Linear, *args: object, **kwargs: object) -> None:
        real_linear(self, *args, **kwargs)  # type: ignore[arg-type]
        assert self.weight.device.type == "meta", "verify_layout built real weights"

    monkeypatch.setattr(torch.nn.Linear, "__init__", linear)


def test_the_guard_against_real_builds_works(no_real_builds: None) -> None:
    with pytest.raises(AssertionError, match="built real weights"):
        build_detector(tiny_test_config())


@pytest.mark.usefixtures("no_real_builds")
def test_segmenter_file_of_its_own_state_dict_is_accepted(
    tmp_path: Path, segmenter_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "w.pt"
    torch.save({"model": segmenter_state, "spec": {"name": SEGMENTER}}, path)
    assert verify_layout(SEGMENTER, path) == len(segmenter_state)


@pytest.mark.usefixtures("no_real_builds")
def test_detector_original_pth_is_accepted(
    tmp_path: Path, detector_original: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "groundingdino_tiny.pth"
    torch.save({"model": {f"module.{k}": v for k, v in detector_original.items()}}, path)
    tensors = verify_layout(DETECTOR, path)
    with torch.device("meta"):
        architecture = len(build_detector(tiny_test_config()).state_dict())
    assert tensors == architecture - 2  # all but the unused Swin final layernorm


def test_detector_files_the_check_accepts_do_load(tmp_path: Path) -> None:
    """What the layout check accepts, the real loader loads: an original `.pth` and a converted
    `.safetensors` of the same architecture."""
    pth = write_original_checkpoint(tiny_test_config(), tmp_path / "tiny.pth")
    verify_layout(DETECTOR, pth)
    create_model(DETECTOR, family="detector", checkpoint_path=pth)
    converted = tmp_path / "tiny.safetensors"
    save_state_dict(build_detector(tiny_test_config()), converted)
    assert verify_layout(DETECTOR, converted) == len(
        build_detector(tiny_test_config()).state_dict()
    )


@pytest.mark.parametrize(
    ("name", "suffix"),
    [(SEGMENTER, ".pt"), (DETECTOR, ".pth"), (DETECTOR, ".safetensors")],
)
def test_random_bytes_are_rejected_in_one_line(tmp_path: Path, name: str, suffix: str) -> None:
    path = tmp_path / f"groundingdino_swint_ogc{suffix}"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as error:
        verify_layout(name, path)
    assert_one_line_naming(error, path)


def test_segmenter_pickle_with_wrong_keys_is_rejected(
    tmp_path: Path, segmenter_state: dict[str, torch.Tensor]
) -> None:
    path = tmp_path / "w.pt"
    renamed = {f"encoder.{k}": v for k, v in segmenter_state.items()}
    torch.save(renamed, path)
    with pytest.raises(CheckpointMismatchError) as error:
        verify_layout(SEGMENTER, path)
    message = assert_one_line_naming(error, path)
    assert f"{len(segmenter_state)} missing keys" in message
    assert f"{len(renamed)} unexpected keys" in message
    assert "'encoder.image_encoder." in message


def test_detector_pickle_with_wrong_keys_is_rejected(
    tmp_path: Path, detector_original: dict[str, torch.Tensor]
) -> None:
    unknown = tmp_path / "unknown.pth"
    torch.save({"model": {"mystery.weight": torch.zeros(2)}}, unknown)
    with pytest.raises(CheckpointError) as error:
        verify_layout(DETECTOR, unknown)
    assert "'mystery.weight'" in assert_one_line_naming(error, unknown)

    missing = tmp_path / "missing.pth"
    torch.save(
        {"model": {k: v for k, v in detector_original.items() if "level_embed" not in k}}, missing
    )
    with pytest.raises(CheckpointMismatchError) as mismatch:
        verify_layout(DETECTOR, missing)
    assert "1 missing keys: ['model.level_embed']" in assert_one_line_naming(mismatch, missing)


def test_segmenter_wrong_shape_is_rejected(
    tmp_path: Path, segmenter_state: dict[str, torch.Tensor]
) -> None:
    key = "mask_decoder.iou_token.weight"
    path = tmp_path / "w.pt"
    torch.save({**segmenter_state, key: torch.zeros(2, 128)}, path)
    with pytest.raises(CheckpointMismatchError) as error:
        verify_layout(SEGMENTER, path)
    assert f"{key}: expected (1, 256), got (2, 128)" in assert_one_line_naming(error, path)


@pytest.mark.parametrize("layout", ["original", "converted"])
def test_detector_wrong_shape_is_rejected(
    tmp_path: Path, detector_original: dict[str, torch.Tensor], layout: str
) -> None:
    if layout == "original":
        path = tmp_path / "bad.pth"
        torch.save(
            {"model": {**detector_original, "transformer.level_embed": torch.zeros(4, 33)}}, path
        )
    else:
        state = {k: v.clone() for k, v in build_detector(tiny_test_config()).state_dict().items()}
        state["model.level_embed"] = torch.zeros(4, 33)
        path = tmp_path / "bad.safetensors"
        save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError) as error:
        verify_layout(DETECTOR, path)
    message = assert_one_line_naming(error, path)
    assert "model.level_embed: expected (4, 32), got (4, 33)" in message


def test_tensors_saved_without_data_are_rejected(
    tmp_path: Path,
    segmenter_state: dict[str, torch.Tensor],
    detector_original: dict[str, torch.Tensor],
) -> None:
    """A file of meta tensors has every key and shape but no weights: the real loader fails on
    it, so the layout check must too."""
    for name, state in ((SEGMENTER, segmenter_state), (DETECTOR, detector_original)):
        path = tmp_path / f"{name}.pt"
        torch.save(
            {"model": {k: torch.empty(v.shape, device="meta") for k, v in state.items()}}, path
        )
        with pytest.raises(CheckpointError, match="meta tensors without data") as error:
            verify_layout(name, path)
        assert_one_line_naming(error, path)


def test_truncated_safetensors_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    save_state_dict(build_detector(tiny_test_config()), path)
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="expected a safetensors file") as error:
        verify_layout(DETECTOR, path)
    assert_one_line_naming(error, path)
