"""SA-1B records: folder and tar shard round trips, bad items reported one by one (reading goes
on), damaged shards, COCO conversion."""

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
    MAX_PENDING_MEMBERS,
    BadSample,
    Sa1bAnnotation,
    Sa1bImage,
    Sa1bRecord,
    Sa1bSample,
    parse_record,
    read_folder,
    read_shard,
    record_to_json,
    write_folder,
    write_shard,
)
from autolabel.storage.sa1b_coco import coco_to_sa1b, sa1b_to_coco


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


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _members(samples: list[Sa1bSample]) -> list[tuple[str, bytes]]:
    """Image then JSON of each sample, as in SA-1B shards."""
    return [
        member
        for s in samples
        for member in (
            (s.record.image.file_name, s.image_bytes),
            (s.record.image.file_name.replace(".jpg", ".json"), _doc(s)),
        )
    ]


def _doc(sample: Sa1bSample, *, rle_size: list[int] | None = None) -> bytes:
    doc = record_to_json(sample.record)
    if rle_size is not None:
        doc["annotations"][0]["segmentation"]["size"] = rle_size
    return json.dumps(doc).encode()


def _split(items: list[Sa1bSample | BadSample]) -> tuple[list[Sa1bSample], list[BadSample]]:
    samples = [i for i in items if isinstance(i, Sa1bSample)]
    bad = [i for i in items if isinstance(i, BadSample)]
    assert len(samples) + len(bad) == len(items)
    return samples, bad


def test_folder_with_a_mismatched_rle_yields_every_good_sample(tmp_path: Path) -> None:
    samples = make_samples(4)
    write_folder(tmp_path, samples)
    (tmp_path / "sa_2.json").write_bytes(_doc(samples[1], rle_size=[10, 10]))
    good, bad = _split(list(read_folder(tmp_path)))
    assert good == [samples[0], samples[2], samples[3]]
    assert [b.name for b in bad] == [str(tmp_path.resolve() / "sa_2.json")]
    assert "expected an RLE of size [24, 32]" in bad[0].reason
    assert "got size [10, 10]" in bad[0].reason


def test_shard_with_a_mismatched_rle_yields_every_good_sample(tmp_path: Path) -> None:
    samples = make_samples(4)
    members = _members(samples)
    members[3] = ("sa_2.json", _doc(samples[1], rle_size=[10, 10]))
    shard = _tar(tmp_path / "sa_000000.tar", members)
    good, bad = _split(list(read_shard(shard)))
    assert good == [samples[0], samples[2], samples[3]]
    assert [b.name for b in bad] == [f"{shard}:sa_2.json"]
    assert "expected an RLE of size [24, 32]" in bad[0].reason


def test_folder_roundtrip(tmp_path: Path) -> None:
    samples = make_samples()
    assert write_folder(tmp_path, samples) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sa_1.jpg", "sa_1.json", "sa_2.jpg", "sa_2.json", "sa_3.jpg", "sa_3.json",
    ]  # fmt: skip
    assert list(read_folder(tmp_path)) == samples


def test_folder_reports_missing_outside_and_unpaired_images_and_reads_on(tmp_path: Path) -> None:
    (tmp_path / "outside.jpg").write_bytes(b"x")
    inner = tmp_path / "ds"
    samples = make_samples(4)
    write_folder(inner, samples)
    doc = record_to_json(samples[1].record)
    doc["image"]["file_name"] = "../outside.jpg"
    (inner / "sa_2.json").write_text(json.dumps(doc))
    doc["image"]["file_name"] = "missing.jpg"
    (inner / "sa_3.json").write_text(json.dumps(doc))
    (inner / "orphan.png").write_bytes(b"an image no JSON names")
    (inner / "broken.json").write_text('{"image": {')
    good, bad = _split(list(read_folder(inner)))
    assert good == [samples[0], samples[3]]
    root = inner.resolve()
    reasons = {Path(b.name).name: b.reason for b in bad}
    assert [b.name for b in bad] == [
        str(root / n) for n in ("broken.json", "sa_2.json", "sa_3.json", "orphan.png")
    ]
    assert "JSONDecodeError" in reasons["broken.json"]
    assert "'../outside.jpg'" in reasons["sa_2.json"]
    assert "'missing.jpg'" in reasons["sa_3.json"]
    assert "orphan.json" in reasons["orphan.png"]


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
def test_truncated_shard_ends_with_one_bad_item_naming_it(tmp_path: Path, where: str) -> None:
    samples = make_samples()
    shard = tmp_path / "sa_000001.tar"
    write_shard(shard, samples)
    with tarfile.open(shard) as archive:
        last = archive.getmembers()[-1]
    cut_at = last.offset_data + last.size // 2 if where.startswith("inside") else last.offset
    cut = tmp_path / "cut.tar"
    cut.write_bytes(shard.read_bytes()[:cut_at])
    items = list(read_shard(cut))
    assert items[:-1] == samples[:2]  # read before the damage
    assert isinstance(items[-1], BadSample)
    assert items[-1].name == str(cut)
    assert "truncated" in items[-1].reason


def test_malformed_json_member_is_named_and_reading_goes_on(tmp_path: Path) -> None:
    samples = make_samples(3)
    members = _members(samples)
    members[2:4] = [("sa_9.jpg", _jpeg(4, 4, 0)), ("sa_9.json", b'{"image": {')]
    shard = _tar(tmp_path / "bad.tar", members)
    good, bad = _split(list(read_shard(shard)))
    assert good == [samples[0], samples[2]]
    assert [b.name for b in bad] == [f"{shard}:sa_9.json"]  # its image goes with it
    assert bad[0].reason.startswith("JSONDecodeError")


def test_unpaired_members_are_reported_and_reading_goes_on(tmp_path: Path) -> None:
    samples = make_samples(3)
    members = _members(samples)
    members.insert(2, ("lonely.jpg", b"abc"))
    shard = _tar(tmp_path / "lonely.tar", [*members, ("last.json", _doc(samples[0]))])
    good, bad = _split(list(read_shard(shard, name="s3://b/lonely.tar")))
    assert good == samples
    assert [b.name for b in bad] == ["s3://b/lonely.tar:lonely.jpg", "s3://b/lonely.tar:last.json"]
    assert "expected its JSON" in bad[0].reason
    assert "expected its image" in bad[1].reason


def test_far_apart_pairs_are_bad_items_in_bounded_memory(tmp_path: Path) -> None:
    samples = make_samples(12)
    images_first = [m for m in _members(samples) if m[0].endswith(".jpg")]
    jsons_after = [m for m in _members(samples) if m[0].endswith(".json")]
    shard = _tar(tmp_path / "split.tar", images_first + jsons_after)
    items = read_shard(shard)
    first = [next(items) for _ in range(12 - MAX_PENDING_MEMBERS)]
    # Each image beyond the window pushes the oldest one out as it arrives, before the JSONs.
    assert [b.name for b in first] == [f"{shard}:sa_{k}.jpg" for k in range(1, 5)]
    good, bad = _split([*first, *items])
    assert good == []
    assert len(bad) == 24
    assert all(f"within {MAX_PENDING_MEMBERS} members" in b.reason for b in bad)


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
