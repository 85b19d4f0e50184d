"""Load review exports into FiftyOne and write what it holds as JSON (run in the tools venv).

    PROBE_OUT=OUT.json python fiftyone_probe.py NAME DATA_PATH LABELS_PATH [NAME ...]

Each export is loaded with `fo.Dataset.from_dir(dataset_type=fo.types.COCODetectionDataset,
label_types=["segmentations"])`, as docs/review.md tells users to. Per sample: its file path and
size, and per detection its label, confidence, box in pixels (x, y, w, h), the mask (cropped to
the box, as FiftyOne keeps it) and its pixel count, and the other attributes FiftyOne kept.
"""

import sys

import fiftyone as fo
from probe_io import mask_to_json, write_result

_FIELDS = {"id", "tags", "label", "confidence", "bounding_box", "mask", "mask_path", "index"}


def _detection(det: fo.Detection, width: int, height: int) -> dict[str, object]:
    x, y, w, h = det.bounding_box
    mask = det.mask
    attributes = {k: v for k, v in det.iter_fields() if k not in _FIELDS and v is not None}
    return {
        "label": det.label,
        "confidence": det.confidence,
        "bbox_px": [x * width, y * height, w * width, h * height],
        "mask": None if mask is None else mask_to_json(mask),
        "mask_pixels": None if mask is None else int((mask > 0).sum()),
        "attributes": attributes,
    }


def _load(name: str, data_path: str, labels_path: str) -> dict[str, object]:
    dataset = fo.Dataset.from_dir(
        dataset_type=fo.types.COCODetectionDataset,
        data_path=data_path,
        labels_path=labels_path,
        label_types=["segmentations"],
        label_field="autolabel",
        name=f"autolabel-probe-{name}",
    )
    dataset.compute_metadata()
    samples = []
    for sample in dataset.iter_samples():
        width, height = sample.metadata.width, sample.metadata.height
        field = sample["autolabel"]
        detections = [] if field is None else field.detections
        samples.append(
            {
                "filepath": sample.filepath,
                "width": width,
                "height": height,
                "detections": [_detection(d, width, height) for d in detections],
            }
        )
    return {"samples": samples}


def main(argv: list[str]) -> None:
    loaded = {argv[i]: _load(*argv[i : i + 3]) for i in range(0, len(argv), 3)}
    write_result({"version": fo.__version__, "datasets": loaded})


if __name__ == "__main__":
    main(sys.argv[1:])
