"""`prove_weights`: one hash per call, recorded in the ledger; pinned digests must match, unpinned
files must load into their architecture, once per digest (on the small test detector)."""

import hashlib
import os
from pathlib import Path

import pytest

from autolabel.models import registry
from autolabel.models.errors import CheckpointError, ChecksumMismatchError
from autolabel.models.grounding_dino import tiny_test_config
from autolabel.models.weight_files import WeightFile
from autolabel.storage.weight_download import prove_weights
from autolabel.storage.weight_ledger import WeightLedger
from tests.unit.models.original_layout import write_original_checkpoint

DETECTOR = "grounding-dino-test"
UNPINNED = WeightFile(filename="tiny.pth", url="https://example.invalid/tiny.pth")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count_layout_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = registry.verify_layout

    def counting(name: str, path: Path | str) -> int:
        calls.append(name)
        return real(name, path)

    monkeypatch.setattr(registry, "verify_layout", counting)
    return calls


def test_an_unpinned_file_is_proven_once_per_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_layout_checks(monkeypatch)
    path = write_original_checkpoint(tiny_test_config(), tmp_path / "tiny.pth")
    first = prove_weights(UNPINNED, tmp_path, model_name=DETECTOR, download=False)
    assert (first.sha256, first.layout_cached, first.changed_from) == (digest(path), False, None)
    assert first.tensors == 290
    again = prove_weights(UNPINNED, tmp_path, model_name=DETECTOR, download=False)
    assert (again.tensors, again.layout_cached) == (290, True)
    assert calls == [DETECTOR]
    assert WeightLedger(tmp_path).entries()["tiny.pth"].layout_verified == {DETECTOR: 290}

    write_original_checkpoint(tiny_test_config(), path, seed=1)  # new content, same layout
    changed = prove_weights(UNPINNED, tmp_path, model_name=DETECTOR, download=False)
    assert changed.changed_from is not None
    assert changed.changed_from.sha256 == first.sha256
    assert not changed.layout_cached
    assert calls == [DETECTOR, DETECTOR]


def test_random_bytes_without_a_pinned_digest_are_rejected_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "tiny.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as error:
        prove_weights(UNPINNED, tmp_path, model_name=DETECTOR, download=False)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)
    entry = WeightLedger(tmp_path).entries()["tiny.pth"]
    assert (entry.sha256, entry.layout_verified) == (digest(path), {})


def test_a_pinned_digest_is_checked_not_the_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_layout_checks(monkeypatch)
    path = tmp_path / "tiny.pth"
    path.write_bytes(b"not weights at all")
    pinned = WeightFile(filename="tiny.pth", url=UNPINNED.url, sha256=digest(path))
    proof = prove_weights(pinned, tmp_path, model_name=DETECTOR, download=False)
    assert (proof.sha256, proof.tensors) == (digest(path), None)
    wrong = WeightFile(filename="tiny.pth", url=UNPINNED.url, sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError, match="0000"):
        prove_weights(wrong, tmp_path, model_name=DETECTOR, download=False)
    assert calls == []
    assert WeightLedger(tmp_path).entries()["tiny.pth"].sha256 == digest(path)
