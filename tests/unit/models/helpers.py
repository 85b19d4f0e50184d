"""Helpers shared by the model tests: vocabulary, thread count, scripts by path, shared/ folder."""

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import torch

from autolabel.models import grounding_dino

#: The bert-base-uncased vocabulary shipped in the package (tokenizer_dir of the detector).
VOCAB_DIR = Path(grounding_dino.__file__).parent / "bert-base-uncased"

#: The checkout's root (this file is tests/unit/models/helpers.py).
REPO_ROOT = Path(__file__).resolve().parents[3]
#: Fixtures kept in the repository (they travel with every clone).
FIXTURES_DIR = REPO_ROOT / "tests" / "fixtures"


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with `count` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def load_script(path: Path, name: str) -> ModuleType:
    """Import the Python file `path` (a fixture script outside any package) as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_dir() -> Path:
    """The project's shared/ folder: `$AUTOLABEL_SHARED_DIR`, else `../shared` beside the checkout.

    A fresh clone has no shared/; tests that need it call `require_shared`.
    """
    override = os.environ.get("AUTOLABEL_SHARED_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared"


def in_ci() -> bool:
    """Whether the tests run under CI (`CI=true`, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_shared(relative: str | Path) -> Path:
    """`shared_dir() / relative`, which the calling test needs. When it is missing the test fails
    under CI (a missing input must not pass as a silent skip there) and is skipped elsewhere."""
    path = shared_dir() / relative
    if not path.exists():
        message = f"{path} is missing (shared/ is not beside the checkout; AUTOLABEL_SHARED_DIR)"
        if in_ci():
            pytest.fail(f"{message}; under CI this is a failure, not a skip", pytrace=False)
        pytest.skip(message)
    return path
