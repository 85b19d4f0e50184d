"""Helpers shared by the model tests: the tokenizer vocabulary, thread count, scripts by path."""

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import torch

from autolabel.models import grounding_dino

#: The bert-base-uncased vocabulary shipped in the package (tokenizer_dir of the detector).
VOCAB_DIR = Path(grounding_dino.__file__).parent / "bert-base-uncased"


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
