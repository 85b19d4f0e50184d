"""Read a CVAT COCO 1.0 export with datumaro (CVAT's format library), write it as CVAT for images
1.1 XML and read that back; write what both readings hold as JSON (run in the tools venv).

    PROBE_OUT=OUT.json python datumaro_probe.py EXPORT_ROOT WORK_DIR

Per item: its id, image size (from the image file), and per annotation its type, id, label,
attributes, box (x, y, w, h in pixels) and, for masks, the mask.
"""

import sys
from typing import Any

import datumaro as dm
from probe_io import mask_to_json, write_result


def _items(dataset: dm.Dataset) -> list[dict[str, Any]]:
    labels = dataset.categories()[dm.AnnotationType.label]
    items = []
    for item in dataset:
        annotations = []
        for ann in item.annotations:
            entry: dict[str, Any] = {
                "type": ann.type.name,
                "id": ann.id,
                "label": None if ann.label is None else labels[ann.label].name,
                "attributes": dict(ann.attributes),
                "bbox": [float(v) for v in ann.get_bbox()],
            }
            if ann.type == dm.AnnotationType.mask:
                entry["mask"] = mask_to_json(ann.image)
            annotations.append(entry)
        shape = item.media.data.shape if item.media is not None and item.media.has_data else None
        items.append(
            {
                "id": item.id,
                "image_hw": None if shape is None else list(shape[:2]),
                "annotations": annotations,
            }
        )
    return items


def main(root: str, work: str) -> None:
    coco = dm.Dataset.import_from(root, "coco_instances")
    coco_items = _items(coco)
    coco.export(f"{work}/cvat", "cvat", save_media=True, allow_undeclared_attrs=True)
    cvat_items = _items(dm.Dataset.import_from(f"{work}/cvat", "cvat"))
    write_result({"version": dm.__version__, "coco": coco_items, "cvat": cvat_items})


if __name__ == "__main__":
    main(*sys.argv[1:])
