"""Strict, verified checkpoint loading from a local file, and the one strict-load checker.

`check_state_dict` / `load_state_dict_strict` serve every model family (GroundingDINO passes its
ignore-pattern list). `load_checkpoint` (EfficientViT-SAM files) takes these steps: sha256 check
(when a digest is expected), `torch.load(map_location="cpu", weights_only=True)`, unwrap
`{"model": ...}` / `{"state_dict": ...}` (retrained weights are saved as `{"model", "spec",
"meta"}`), strip `module.` / `_orig_mod.` prefixes, apply the spec's remap, then
`load_state_dict(strict=True)`.
"""

import pickle
import re
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


def read_checkpoint(path: Path, *, expected_sha256: str | None = None) -> Mapping[str, Any]:
    """Verify (when `expected_sha256` is given) and `torch.load` a checkpoint safely.

    Raises:
        WeightsUnavailableError: the file does not exist.
        ChecksumMismatchError: the digest differs.
        CheckpointError: the file is not a loadable weights-only checkpoint dict.
    """
    if not path.is_file():
        raise WeightsUnavailableError(f"expected a checkpoint file at {path}, found none")
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as exc:
        raise CheckpointError(f"could not load checkpoint {path}: {exc}") from exc
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
    return {_strip_prefixes(str(k)): v for k, v in inner.items()}


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
    spec = checkpoint.get("spec")
    spec_name = spec.get("name") if isinstance(spec, Mapping) else spec
    if expected_name is not None and isinstance(spec_name, str) and spec_name != expected_name:
        raise CheckpointMismatchError(
            f"checkpoint {path} is for model {spec_name!r}, expected {expected_name!r}"
        )
    state_dict = remap(extract_state_dict(checkpoint, source=str(path)))
    load_state_dict_strict(model, state_dict, source=str(path))
    return checkpoint


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
