"""Strict, verified checkpoint loading from a local file, and the one strict-load checker.

`check_state_dict` / `load_state_dict_strict` serve every model family (GroundingDINO passes its
ignore-pattern list). `load_checkpoint` (EfficientViT-SAM files) takes these steps: sha256 check
(when a digest is expected), `torch.load(map_location="cpu", weights_only=True)`, unwrap
`{"model": ...}` / `{"state_dict": ...}` (retrained weights are saved as `{"model", "spec",
"meta"}`), strip `module.` / `_orig_mod.` prefixes, apply the spec's remap, then
`load_state_dict(strict=True)`. `check_checkpoint_layout` takes the same steps up to the key and
shape check against an architecture built on the `meta` device, without building any weights.
"""

import pickle
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from autolabel.models.errors import (
    CheckpointError,
    CheckpointMismatchError,
    ChecksumMismatchError,
    WeightsUnavailableError,
)
from autolabel.models.weight_files import sha256_of

StateDict = dict[str, Tensor]
_WRAPPER_KEYS = ("model", "state_dict")
_PREFIXES = ("module.", "_orig_mod.")
_SHOWN = 10
_REASON_CHARS = 300
_UNPICKLER = "WeightsUnpickler error:"
# What torch.load raises on a corrupt or non-weights-only file (its unpickler is not consistent).
_LOAD_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,
    OSError,
)


def identity_remap(state_dict: StateDict) -> StateDict:
    """The default remap: checkpoint keys already match the architecture."""
    return state_dict


def verify_sha256(path: Path, expected: str) -> None:
    """Raise `ChecksumMismatchError` (expected vs got) when the file's sha256 differs."""
    got = sha256_of(path)
    if got != expected.lower():
        raise ChecksumMismatchError(
            f"checksum mismatch for {path}: expected sha256 {expected.lower()}, got {got}"
        )


def _load_error_reason(exc: BaseException) -> str:
    """One line (at most 300 characters) saying why `torch.load` rejected a file."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if _UNPICKLER in text:  # torch's weights-only message is a paragraph around the cause
        cause = text.split(_UNPICKLER, 1)[1].split(" Check the documentation", 1)[0].strip()
        text = f"not a torch.save file readable with weights_only=True ({cause})"
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def read_checkpoint(
    path: Path, *, expected_sha256: str | None = None, mmap: bool = False
) -> Mapping[str, Any]:
    """Verify (when `expected_sha256` is given) and `torch.load` a checkpoint safely.

    Args:
        path: Local checkpoint file.
        expected_sha256: Verify the file's digest first when given.
        mmap: Map a zip-format file instead of reading it: its tensors then stay on disk until
            their values are used (a legacy pickle-format file is read whole either way).

    Raises:
        WeightsUnavailableError: the file does not exist.
        ChecksumMismatchError: the digest differs.
        CheckpointError: the file is not a loadable weights-only checkpoint dict (one line).
    """
    if not path.is_file():
        raise WeightsUnavailableError(f"expected a checkpoint file at {path}, found none")
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256)
    try:
        mapped = mmap and zipfile.is_zipfile(path)  # torch maps only zip-format files
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=mapped)
    except _LOAD_ERRORS as exc:
        raise CheckpointError(
            f"could not load checkpoint {path}: {_load_error_reason(exc)}"
        ) from exc
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"expected a dict checkpoint in {path}, got {type(loaded).__name__}")
    return loaded


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def extract_state_dict(checkpoint: Mapping[str, Any], *, source: str = "checkpoint") -> StateDict:
    """Unwrap a checkpoint dict to a plain `name -> tensor` state dict without prefixes.

    Args:
        checkpoint: What `torch.load` returned.
        source: Name used in error messages (for example the path).
    """
    inner: Any = checkpoint
    for key in _WRAPPER_KEYS:
        if isinstance(inner, Mapping) and isinstance(inner.get(key), Mapping):
            inner = inner[key]
    bad = [k for k, v in inner.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"expected a state dict of tensors in {source}, got non-tensor entries {bad[:_SHOWN]}"
        )
    check_has_data(inner, source=source)
    return {_strip_prefixes(str(k)): v for k, v in inner.items()}


def check_has_data(state_dict: Mapping[str, Tensor], *, source: str) -> None:
    """Raise `CheckpointError` when tensors of a loaded file are on the `meta` device (saved
    without data: they have shapes, so only this tells them from weights)."""
    empty = [str(k) for k, v in state_dict.items() if v.device.type == "meta"]
    if empty:
        raise CheckpointError(
            f"expected tensors with data in {source}, got {len(empty)} meta tensors without "
            f"data: {empty[:_SHOWN]}"
        )


def check_load_state_dict_errors(
    *,
    source: str,
    missing: Sequence[str],
    unexpected: Sequence[str],
    shapes: Sequence[str] = (),
    ignore_missing: Sequence[str] = (),
) -> None:
    """Raise `CheckpointMismatchError` naming the first 10 keys of each kind of mismatch.

    The only tolerance is explicit (sam2's `check_load_state_dict_errors`): missing keys that
    match one of the `ignore_missing` regular expressions (`re.search`) are not errors.

    Args:
        source: What was loaded (a path), for the message.
        missing: Keys the architecture has and the state dict lacks.
        unexpected: Keys the state dict has and the architecture lacks.
        shapes: One "key: expected (...), got (...)" line per mis-shaped key.
        ignore_missing: Regular expressions of architecture keys checkpoints may lack.
    """
    patterns = [re.compile(p) for p in ignore_missing]
    missing = [k for k in missing if not any(p.search(k) for p in patterns)]
    if not (missing or unexpected or shapes):
        return
    parts = [f"checkpoint {source} does not match the architecture"]
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
            parts.append(f"{len(items)} {label} keys: {list(items[:_SHOWN])}{more}")
    raise CheckpointMismatchError("; ".join(parts))


def check_state_dict(
    expected: Mapping[str, Tensor],
    state_dict: Mapping[str, Tensor],
    *,
    source: str,
    ignore_missing: Sequence[str] = (),
) -> None:
    """Raise `CheckpointMismatchError` unless `state_dict` has exactly the keys and shapes of
    `expected` (a model's `state_dict()`; its tensors may be on the meta device), up to the
    missing keys matched by `ignore_missing` (see `check_load_state_dict_errors`)."""
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(v.shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    check_load_state_dict_errors(
        source=source,
        missing=[k for k in expected if k not in state_dict],
        unexpected=[k for k in state_dict if k not in expected],
        shapes=shapes,
        ignore_missing=ignore_missing,
    )


def load_state_dict_strict(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    source: str,
    ignore_missing: Sequence[str] = (),
) -> None:
    """Check `state_dict` against `model` (`check_state_dict`), then load it with `strict=True`.

    Keys matched by `ignore_missing` that the state dict lacks keep the model's own values.

    Raises:
        CheckpointMismatchError: Names the first 10 missing, unexpected and mis-shaped keys.
    """
    own = model.state_dict()
    check_state_dict(own, state_dict, source=source, ignore_missing=ignore_missing)
    complete = {**{k: v for k, v in own.items() if k not in state_dict}, **state_dict}
    model.load_state_dict(complete, strict=True)


def load_checkpoint(
    model: nn.Module,
    path: Path,
    *,
    expected_sha256: str | None = None,
    expected_name: str | None = None,
    remap: Callable[[StateDict], StateDict] = identity_remap,
) -> Mapping[str, Any]:
    """Load a checkpoint file into `model` strictly.

    Args:
        model: The freshly built architecture.
        path: Local checkpoint path (official `.pt` or retrained `{"model", "spec", "meta"}`).
        expected_sha256: Verify the file's digest first when given.
        expected_name: When the checkpoint records a `spec` name, it must equal this.
        remap: Key/value conversion applied after unwrapping.

    Returns:
        The raw checkpoint mapping (for retrained weights, its `spec` and `meta`).
    """
    checkpoint = read_checkpoint(path, expected_sha256=expected_sha256)
    state_dict = _model_state_dict(checkpoint, path, expected_name=expected_name, remap=remap)
    load_state_dict_strict(model, state_dict, source=str(path))
    return checkpoint


def _model_state_dict(
    checkpoint: Mapping[str, Any],
    path: Path,
    *,
    expected_name: str | None,
    remap: Callable[[StateDict], StateDict],
) -> StateDict:
    """The remapped state dict of a loaded checkpoint, after its recorded model name check."""
    spec = checkpoint.get("spec")
    spec_name = spec.get("name") if isinstance(spec, Mapping) else spec
    if expected_name is not None and isinstance(spec_name, str) and spec_name != expected_name:
        raise CheckpointMismatchError(
            f"checkpoint {path} is for model {spec_name!r}, expected {expected_name!r}"
        )
    return remap(extract_state_dict(checkpoint, source=str(path)))


def check_checkpoint_layout(
    model: nn.Module,
    path: Path,
    *,
    expected_name: str | None = None,
    remap: Callable[[StateDict], StateDict] = identity_remap,
) -> int:
    """Prove that `load_checkpoint(model, path, ...)` would succeed, without loading weights.

    The file is read as `load_checkpoint` reads it (weights-only, unwrapped, name-checked,
    remapped) but memory-mapped, and only its keys and shapes are compared with `model`'s, so
    `model` may be built on the `meta` device (`with torch.device("meta"): ...`).

    Args:
        model: The architecture; its tensors may be on the meta device.
        path: Local checkpoint file (official `.pt` or retrained `{"model", "spec", "meta"}`).
        expected_name: When the checkpoint records a `spec` name, it must equal this.
        remap: Key/value conversion applied after unwrapping.

    Returns:
        The number of tensors in the file's (remapped) state dict.

    Raises:
        WeightsUnavailableError: the file does not exist.
        CheckpointError: the file is not a weights-only checkpoint of tensors (one line).
        CheckpointMismatchError: keys or shapes differ (the first 10 of each kind are named).
    """
    checkpoint = read_checkpoint(path, mmap=True)
    state_dict = _model_state_dict(checkpoint, path, expected_name=expected_name, remap=remap)
    check_state_dict(model.state_dict(), state_dict, source=str(path))
    return len(state_dict)


def save_checkpoint(
    model: nn.Module, path: Path, *, model_name: str, meta: Mapping[str, Any] | None = None
) -> Path:
    """Save retrained weights as `{"model": state_dict, "spec": {"name": ...}, "meta": ...}`.

    The file loads back with `load_checkpoint` / `create_model(model_name, checkpoint_path=path)`
    (which checks the recorded name). It is written to `<path>.tmp` and renamed, so readers never
    see a partial file. Save from the unfolded model (not `prepare_for_inference`'s copy), whose
    keys match.

    Args:
        model: The model whose `state_dict()` is saved (moved to CPU).
        path: Destination file.
        model_name: Registry name of the architecture, e.g. "efficientvit-sam-l0".
        meta: JSON-like metadata (str, int, float, bool, lists, dicts) loadable with
            `weights_only=True`.

    Returns:
        `path`.
    """
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"model": state_dict, "spec": {"name": model_name}, "meta": dict(meta or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path
