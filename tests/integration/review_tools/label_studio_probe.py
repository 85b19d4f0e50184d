"""Label Studio's own brush RLE codec (label_studio_sdk.converter.brush), for the tests (run in
Label Studio's venv).

    PROBE_OUT=OUT.json python label_studio_probe.py decode REGIONS.json
        REGIONS.json: {key: {"rle": [...], "width": W, "height": H}}
        OUT.json:     {key: {"mask": <mask>, "alpha_values": [...]}}
    PROBE_OUT=OUT.json python label_studio_probe.py encode MASKS.json
        MASKS.json:   {key: <mask>};  OUT.json: {key: [rle ...]}

Label Studio decodes a brush region to a (H, W, 4) RGBA image and shows its alpha channel; the
mask is where alpha is nonzero. Encoding goes through `mask2rle`, as its converters do.
"""

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from label_studio_sdk.converter.brush import decode_rle, mask2rle
from probe_io import mask_from_json, mask_to_json, write_result


def decode(regions: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, region in regions.items():
        rgba = np.asarray(decode_rle(region["rle"]), dtype=np.uint8)
        height, width = region["height"], region["width"]
        if rgba.size != height * width * 4:
            raise ValueError(f"{key}: expected {height}x{width}x4 values, got {rgba.size}")
        alpha = rgba.reshape(height, width, 4)[:, :, 3]
        out[key] = {
            "mask": mask_to_json(alpha > 0),
            "alpha_values": sorted(int(v) for v in np.unique(alpha)),
        }
    return out


def encode(masks: dict[str, Any]) -> dict[str, Any]:
    return {
        key: [int(v) for v in mask2rle(mask_from_json(doc).astype(np.uint8) * 255)]
        for key, doc in masks.items()
    }


def main(command: str, source: str) -> None:
    doc = json.loads(Path(source).read_text(encoding="utf-8"))
    write_result(decode(doc) if command == "decode" else encode(doc))


if __name__ == "__main__":
    main(*sys.argv[1:])
