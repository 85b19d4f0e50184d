"""SA-1B records: folder and tar shard round trips, damaged shards, COCO conversion."""

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from autolabel.storage.errors import FormatError
from autolabel.storage.rle import decode_rle, encode_masks, rle_areas, rle_bboxes
from autolabel.storage.sa1b import (
    Sa1bAnnotation,
    Sa1bImage,
    Sa1bRecord,
    Sa1bSample,
    coco_to_sa1b,
    parse_record,
    read_folder,
    read_shard,
    record_to_json,
    sa1b_to_coco,
    write_folder,
    write_shard,
)


def _jpeg(height: int, width: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def make_samples(n: int = 3, height: int = 24, width: int = 32) -> list[Sa1bSample]:
    samples = []
    for k in range(n):
        stack = np.zeros((height, width, k + 1), dtype=np.uint8, order="F")
        for i in range(k + 1):
            stack[2 + i : 9 + 2 * i, 1 + 10 * i : 9 + 10 * i, i] = 1  # disjoint masks
        rles = encode_masks(stack)
        boxes, areas = rle_bboxes(rles), rle_areas(rles)
        anns = tuple(
            Sa1bAnnotation(
                id=100 * k + i + 1, segmentation=rle, bbox_xywh_px=tuple(boxes[i].tolist()),
                area=float(areas[i]), predicted_iou=0.9, stability_score=0.95,
                point_coords=((5.5, 6.5),), crop_box=(0.0, 0.0, float(width), float(height)),
            )
            for i, rle in enumerate(rles)
        )  # fmt: skip
        image = Sa1bImage(image_id=k + 1, width=width, height=height, file_name=f"sa_{k + 1}.jpg")
        record = Sa1bRecord(image=image, annotations=anns)
        samples.append(Sa1bSample(record=record, image_bytes=_jpeg(height, width, k)))
    return samples


def test_folder_roundtrip(tmp_path: Path) -> None:
    samples = make_samples()
    assert write_folder(tmp_path, samples) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sa_1.jpg", "sa_1.json", "sa_2.jpg", "sa_2.json", "sa_3.jpg", "sa_3.json",
    ]  # fmt: skip
    assert list(read_folder(tmp_path)) == samples


def test_folder_json_cannot_point_outside(tmp_path: Path) -> None:
    (tmp_path / "outside.jpg").write_bytes(b"x")
    inner = tmp_path / "ds"
    inner.mkdir()
    doc = record_to_json(make_samples(1)[0].record)
    doc["image"]["file_name"] = "../outside.jpg"
    (inner / "sa_1.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=r"sa_1\.json"):
        list(read_folder(inner))
    doc["image"]["file_name"] = "missing.jpg"
    (inner / "sa_1.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError, match=r"missing\.jpg"):
        list(read_folder(inner))


def test_shard_roundtrip_from_path_stream_and_gzip(tmp_path: Path) -> None:
    samples = make_samples()
    shard = tmp_path / "sa_000000.tar"
    assert write_shard(shard, samples) == 3
    with tarfile.open(shard) as archive:
        assert archive.getnames()[:2] == ["sa_1.jpg", "sa_1.json"]
    assert list(read_shard(shard)) == samples
    with shard.open("rb") as stream:
        assert list(read_shard(stream, name="s3://b/sa_000000.tar")) == samples
    gz = tmp_path / "sa_000000.tar.gz"
    gz.write_bytes(gzip.compress(shard.read_bytes()))
    assert list(read_shard(gz)) == samples


@pytest.mark.parametrize("where", ["inside the last member", "at a member boundary"])
def test_truncated_shard_names_the_shard(tmp_path: Path, where: str) -> None:
    shard = tmp_path / "sa_000001.tar"
    write_shard(shard, make_samples())
    with tarfile.open(shard) as archive:
        last = archive.getmembers()[-1]
    cut_at = last.offset_data + last.size // 2 if where.startswith("inside") else last.offset
    cut = tmp_path / "cut.tar"
    cut.write_bytes(shard.read_bytes()[:cut_at])
    with pytest.raises(FormatError, match=r"cut\.tar"):
        list(read_shard(cut))


def test_malformed_json_member_is_named(tmp_path: Path) -> None:
    shard = tmp_path / "bad.tar"
    with tarfile.open(shard, "w") as archive:
        for name, data in (("sa_9.jpg", _jpeg(4, 4, 0)), ("sa_9.json", b'{"image": {')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with pytest.raises(FormatError, match=r"bad\.tar:sa_9\.json"):
        list(read_shard(shard))


def test_unpaired_and_far_apart_members_are_errors(tmp_path: Path) -> None:
    samples = make_samples(12)
    images_first = tmp_path / "split.tar"
    with tarfile.open(images_first, "w") as archive:
        for suffix in (".jpg", ".json"):
            for s in samples:
                name = s.record.image.file_name.replace(".jpg", suffix)
                data = (
                    s.image_bytes
                    if suffix == ".jpg"
                    else json.dumps(record_to_json(s.record)).encode()
                )
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    with pytest.raises(FormatError, match="next to its JSON"):
        list(read_shard(images_first))
    lonely = tmp_path / "lonely.tar"
    with tarfile.open(lonely, "w") as archive:
        info = tarfile.TarInfo("sa_1.jpg")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(FormatError, match="without their image/JSON pair"):
        list(read_shard(lonely))


def test_unsafe_file_names_are_rejected() -> None:
    doc = record_to_json(make_samples(1)[0].record)
    doc["image"]["file_name"] = "/etc/passwd"
    with pytest.raises(FormatError, match="absolute"):
        parse_record(json.dumps(doc), name="x.json")


def test_coco_sa1b_coco_roundtrip_and_cocoeval(tmp_path: Path) -> None:
    records = [s.record for s in make_samples()]
    coco_doc = sa1b_to_coco(records)
    back = list(coco_to_sa1b(coco_doc))
    assert back == records
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco_doc))
    gt = COCO(str(path))
    dets = [dict(a, score=1.0) for a in gt.dataset["annotations"]]
    evaluator = COCOeval(gt, gt.loadRes(dets), "segm")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)
    clash = Sa1bRecord(image=records[0].image, annotations=records[1].annotations)
    with pytest.raises(FormatError, match="unique SA-1B annotation ids"):
        sa1b_to_coco([records[1], clash])


def test_ground_truth_gets_an_interior_prompt_point() -> None:
    doc = {
        "images": [{"id": 5, "file_name": "a.jpg", "width": 20, "height": 10}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 1, "segmentation": [[2, 2, 17, 2, 17, 8, 2, 8]]}
        ],
    }
    (record,) = coco_to_sa1b(doc)
    (ann,) = record.annotations
    mask = decode_rle(ann.segmentation)
    ((x, y),) = ann.point_coords
    assert mask[int(y), int(x)]
    assert (ann.predicted_iou, ann.stability_score) == (1.0, 1.0)
    assert ann.crop_box == (0.0, 0.0, 20.0, 10.0)
    assert ann.area == mask.sum()
