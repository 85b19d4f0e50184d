"""The on-disk cache of built files: built once per key, rebuilt with a warning when corrupt."""

import json
import logging
from pathlib import Path

import pytest

from autolabel.storage.artifact_cache import ENTRY_FILE, ArtifactCache

KEY = {"weights": "abc123", "runtime": "onnxruntime 1.32.0", "shape": [1, 3, 512, 512]}


class Builder:
    def __init__(self, content: bytes = b"graph") -> None:
        self.content = content
        self.calls = 0

    def __call__(self, path: Path) -> None:
        self.calls += 1
        path.write_bytes(self.content)


def test_a_file_is_built_once_per_key_and_a_new_key_builds_another(tmp_path: Path) -> None:
    cache, build = ArtifactCache(tmp_path), Builder()
    first = cache.get("sam-l0-encoder", KEY, "encoder.onnx", build)
    again = cache.get("sam-l0-encoder", dict(KEY), "encoder.onnx", build)
    assert first == again
    assert first.read_bytes() == b"graph"
    assert build.calls == 1
    other = cache.get("sam-l0-encoder", {**KEY, "weights": "def456"}, "encoder.onnx", build)
    assert other != first
    assert build.calls == 2
    assert json.loads((first.parent / ENTRY_FILE).read_text())["key"]["weights"] == "abc123"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda entry: (entry / "encoder.onnx").write_bytes(b"grapf"), "corrupt"),
        (lambda entry: (entry / "encoder.onnx").unlink(), "missing"),
        (lambda entry: (entry / ENTRY_FILE).write_text("{not json"), "unreadable"),
    ],
)
def test_a_damaged_entry_is_rebuilt_with_a_warning(
    tmp_path: Path, damage: object, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache, build = ArtifactCache(tmp_path), Builder()
    path = cache.get("sam-l0-encoder", KEY, "encoder.onnx", build)
    damage(path.parent)  # type: ignore[operator]
    with caplog.at_level(logging.WARNING):
        rebuilt = cache.get("sam-l0-encoder", KEY, "encoder.onnx", build)
    assert rebuilt.read_bytes() == b"graph"
    assert build.calls == 2
    assert reason in caplog.text
    assert "rebuilding" in caplog.text


def test_an_entry_of_another_key_in_the_folder_is_rebuilt(tmp_path: Path) -> None:
    cache, build = ArtifactCache(tmp_path), Builder()
    path = cache.get("x", KEY, "f.bin", build)
    meta = json.loads((path.parent / ENTRY_FILE).read_text())
    meta["key"]["weights"] = "tampered"
    (path.parent / ENTRY_FILE).write_text(json.dumps(meta))
    cache.get("x", KEY, "f.bin", build)
    assert build.calls == 2


def test_a_failed_build_leaves_no_entry_and_the_next_call_builds(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)

    def failing(path: Path) -> None:
        path.write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError, match="exporter crashed"):
        cache.get("x", KEY, "f.bin", failing)
    assert not cache.entry_dir("x", KEY).exists()
    assert [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    build = Builder()
    assert cache.get("x", KEY, "f.bin", build).read_bytes() == b"graph"
