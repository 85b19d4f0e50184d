"""Masks and results between the tests and the probe scripts, which run in the review tools'
own virtual environments (numpy and the standard library only, so every venv can import it).

A mask travels as `{"shape": [H, W], "bits": <base64 of numpy.packbits of the row-major
mask>}`: exact, and independent of any RLE codec under test.
"""

import base64
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt


def mask_to_json(mask_hw: npt.NDArray[Any]) -> dict[str, Any]:
    """An (H, W) mask (nonzero = inside) as JSON."""
    bits = np.packbits(np.asarray(mask_hw).astype(bool).ravel())
    return {"shape": list(mask_hw.shape), "bits": base64.b64encode(bits.tobytes()).decode()}


def mask_from_json(doc: dict[str, Any]) -> npt.NDArray[np.bool_]:
    """The (H, W) bool mask of `mask_to_json`."""
    height, width = doc["shape"]
    bits = np.frombuffer(base64.b64decode(doc["bits"]), dtype=np.uint8)
    return np.unpackbits(bits, count=height * width).astype(bool).reshape(height, width)


def write_result(doc: Any) -> None:
    """Write a probe's result to the file PROBE_OUT names (read once the probe has exited)."""
    Path(os.environ["PROBE_OUT"]).write_text(json.dumps(doc), encoding="utf-8")
