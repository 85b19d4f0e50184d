"""End to end: images in moto S3 -> labeling flow -> PostgreSQL -> COCO export on S3.

Tiny random-weight models (`grounding-dino-test`, `efficientvit-sam-test`) keep it fast; the
thresholds are 0 so that every decodable image gets boxes and masks.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from sqlalchemy import create_engine, text

from autolabel.flows.export_coco import ExportRequest, export_coco
from autolabel.flows.label_dataset import RunAbortedError, autolabel_dataset
from autolabel.models.detection import DetectionConfig
from autolabel.tasks.labeling.job import LabelJob
from tests.corpus import write_bad_image_corpus, write_good_images
from tests.integration.flows.conftest import FlowEnv

pytestmark = pytest.mark.integration

N_GOOD = 42


def make_job(env: FlowEnv, dataset: str, **overrides: object) -> LabelJob:
    fields: dict[str, object] = {
        "source": f"s3://{env.bucket}/images",
        "dataset": dataset,
        "prompts": ["box", "disc"],
        "pattern": "*",  # list every file, not only image suffixes: the corpus must fail loudly
        "detector": "grounding-dino-test",
        "segmenter": "efficientvit-sam-test",
        "thresholds": DetectionConfig(box_threshold=0.0, text_threshold=0.0, max_detections=3),
        "shard_size": 16,
        "batch_size": 4,
        "random_weights": True,
        "max_failure_fraction": 0.5,
        # The torch runtimes unless a test asks for `auto` (the end-to-end test does): `auto`
        # exports and compiles the detector once per image shape, a cost paid per test process.
        "segmenter_backend": "torch",
        "detector_backend": "torch",
    }
    fields.update(overrides)
    return LabelJob.model_validate(fields)


def upload_corpus(env: FlowEnv, tmp_path: Path) -> tuple[int, dict[str, str | None]]:
    """Upload 42 good images and the 18-file bad corpus; returns (count, name -> reason)."""
    write_good_images(tmp_path / "images", N_GOOD, np.random.default_rng(1), max_side=160)
    expected = write_bad_image_corpus(tmp_path / "images")
    count = env.upload_folder(tmp_path / "images", "images/")
    reasons: dict[str, str | None] = {name: e.reason for name, e in expected.items()}
    reasons.update({f"img_{i:04d}{'.jpg' if i % 2 == 0 else '.png'}": None for i in range(N_GOOD)})
    return count, reasons


def db_rows(env: FlowEnv, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_engine(env.database_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def annotation_rows(env: FlowEnv, dataset: str) -> list[tuple[object, ...]]:
    return db_rows(
        env,
        "SELECT a.image_id, a.instance_index, a.seg_counts FROM annotations a "
        "JOIN datasets d ON d.id = a.dataset_id WHERE d.name = :name "
        "ORDER BY a.image_id, a.instance_index",
        name=dataset,
    )


def test_labels_bucket_into_database_and_coco(flow_env: FlowEnv, tmp_path: Path) -> None:
    count, reasons = upload_corpus(flow_env, tmp_path)
    assert count == 60
    expected_failed = {name: r for name, r in reasons.items() if r is not None}

    summary = autolabel_dataset(
        make_job(flow_env, "e2e", segmenter_backend="auto", detector_backend="auto")
    )

    assert summary.status == "completed"
    assert summary.images_done == 60 - len(expected_failed)
    assert summary.images_failed == len(expected_failed)
    assert sum(summary.failures.values()) == len(expected_failed)
    stored = dict(
        db_rows(
            flow_env,
            "SELECT i.storage_key, i.failure_reason FROM images i JOIN datasets d "
            "ON d.id = i.dataset_id WHERE d.name = 'e2e' AND i.status = 'failed'",
        )
    )
    assert {str(k).rsplit("/", 1)[1]: v for k, v in stored.items()} == expected_failed
    rows = annotation_rows(flow_env, "e2e")
    assert len(rows) == summary.annotations > 0
    assert len({(r[0], r[1]) for r in rows}) == len(rows)
    # The run records the runtime each model ran in (auto: gated, measured) and why.
    (runtimes,) = db_rows(
        flow_env, "SELECT runtimes FROM label_runs WHERE id = :id", id=summary.run_id
    )
    recorded = runtimes[0] if isinstance(runtimes[0], dict) else json.loads(str(runtimes[0]))
    assert set(recorded) == {"segmenter", "detector"}
    for model, choices in recorded.items():
        assert len(choices) == 1  # one worker: one choice, recorded once for all its shards
        assert choices[0]["request"] == "auto/auto"
        assert choices[0]["model"] == model
        assert choices[0]["runtime"] in {
            "openvino-bf16",
            "openvino-fp32",
            "onnxruntime-fp32",
            "torch-fp32",
        }
        assert "fastest passing" in choices[0]["reason"]

    output = f"s3://{flow_env.bucket}/exports/e2e.coco.json"
    result = export_coco(ExportRequest(dataset="e2e", output=output, overlays=2))
    assert result.annotations == summary.annotations
    assert len(result.overlay_urls) == 2
    local = tmp_path / "e2e.coco.json"
    flow_env.s3().download_file(flow_env.bucket, "exports/e2e.coco.json", str(local))
    coco = COCO(str(local))
    assert len(coco.getImgIds()) == summary.images_done
    assert len(coco.getAnnIds()) == summary.annotations
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"box", "disc"}

    # A rerun skips every image: done ones, and failed ones unless asked to retry them.
    again = autolabel_dataset(make_job(flow_env, "e2e"))
    assert (again.images_done, again.images_failed, again.images_skipped) == (0, 0, 60)
    # Retrying the failed ones fails them all again: more than half of what the run processed.
    with pytest.raises(RunAbortedError, match=f"{len(expected_failed)} of {len(expected_failed)}"):
        autolabel_dataset(make_job(flow_env, "e2e", retry_failed=True))
    assert annotation_rows(flow_env, "e2e") == rows


def test_new_and_changed_images_are_the_only_ones_relabeled(
    flow_env: FlowEnv, tmp_path: Path
) -> None:
    write_good_images(tmp_path / "a", 6, np.random.default_rng(2), max_side=120)
    flow_env.upload_folder(tmp_path / "a", "images/")
    first = autolabel_dataset(make_job(flow_env, "incremental"))
    assert first.images_done == 6

    write_good_images(tmp_path / "b", 9, np.random.default_rng(3), max_side=120)
    client = flow_env.s3()
    for path in sorted((tmp_path / "b").iterdir())[6:]:  # three new images
        client.upload_file(str(path), flow_env.bucket, f"images/new_{path.name}")
    changed = sorted((tmp_path / "b").iterdir())[0]  # new content under an existing key
    client.upload_file(str(changed), flow_env.bucket, "images/img_0000.jpg")

    second = autolabel_dataset(make_job(flow_env, "incremental"))
    assert (second.images_done, second.images_failed, second.images_skipped) == (4, 0, 5)
    per_image = db_rows(
        flow_env,
        "SELECT r.image_id, r.n_annotations, "
        "(SELECT count(*) FROM annotations a WHERE a.image_id = r.image_id "
        " AND a.work_key = r.work_key) FROM image_results r "
        "JOIN images i ON i.id = r.image_id AND i.etag = r.etag "
        "JOIN datasets d ON d.id = i.dataset_id WHERE d.name = 'incremental'",
    )
    assert len(per_image) == 9
    assert all(n == stored for _, n, stored in per_image)


def test_too_many_failures_abort_the_run(flow_env: FlowEnv, tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    for i in range(6):
        (folder / f"broken_{i}.jpg").write_bytes(b"not a jpeg " * i)
    write_good_images(folder, 2, np.random.default_rng(4), max_side=100)
    flow_env.upload_folder(folder, "images/")
    with pytest.raises(RunAbortedError, match="6 of 8 images failed"):
        autolabel_dataset(make_job(flow_env, "aborting", shard_size=8))
    status = db_rows(
        flow_env,
        "SELECT r.status FROM label_runs r JOIN datasets d ON d.id = r.dataset_id "
        "WHERE d.name = 'aborting'",
    )
    assert status == [("aborted",)]


def test_boxes_from_coco_are_segmented_without_the_detector(
    flow_env: FlowEnv, tmp_path: Path
) -> None:
    write_good_images(tmp_path / "imgs", 4, np.random.default_rng(7), max_side=120)
    flow_env.upload_folder(tmp_path / "imgs", "images/")
    names = sorted(p.name for p in (tmp_path / "imgs").iterdir())
    coco = {
        "images": [
            {"id": i, "file_name": n, "width": 60, "height": 60} for i, n in enumerate(names)
        ],
        "categories": [{"id": 1, "name": "crate"}, {"id": 2, "name": "drum"}],
        "annotations": [
            {"id": 10 + i, "image_id": i, "category_id": 1 + i % 2, "bbox": [5, 5, 40, 30]}
            for i in range(3)  # the fourth image has no boxes
        ],
    }
    flow_env.s3().put_object(
        Bucket=flow_env.bucket, Key="boxes/coco.json", Body=json.dumps(coco).encode()
    )
    summary = autolabel_dataset(
        make_job(
            flow_env, "from-boxes", prompts=[], boxes_from=f"s3://{flow_env.bucket}/boxes/coco.json"
        )
    )
    assert (summary.images_done, summary.images_failed) == (4, 0)
    assert set(summary.annotations_per_category) == {"crate", "drum"}
    assert 0 < summary.annotations <= 3
    runs = db_rows(
        flow_env,
        "SELECT r.detector_model FROM label_runs r JOIN datasets d ON d.id = r.dataset_id "
        "WHERE d.name = 'from-boxes'",
    )
    assert runs == [("boxes_from",)]


def test_manifest_names_the_images_to_label(flow_env: FlowEnv, tmp_path: Path) -> None:
    write_good_images(tmp_path / "imgs", 5, np.random.default_rng(8), max_side=100)
    flow_env.upload_folder(tmp_path / "imgs", "images/")
    names = sorted(p.name for p in (tmp_path / "imgs").iterdir())
    manifest = "\n".join(
        [
            "# two keys relative to the source, one full URL, one JSON line",
            names[0],
            names[1],
            f"s3://{flow_env.bucket}/images/{names[2]}",
            json.dumps({"key": names[3]}),
        ]
    )
    flow_env.s3().put_object(Bucket=flow_env.bucket, Key="lists/today.txt", Body=manifest.encode())
    summary = autolabel_dataset(
        make_job(
            flow_env,
            "from-manifest",
            pattern=None,
            manifest=f"s3://{flow_env.bucket}/lists/today.txt",
        )
    )
    assert (summary.images_done, summary.images_failed) == (4, 0)
    keys = db_rows(
        flow_env,
        "SELECT i.storage_key FROM images i JOIN datasets d ON d.id = i.dataset_id "
        "WHERE d.name = 'from-manifest' ORDER BY 1",
    )
    assert [k[0] for k in keys] == [f"s3://{flow_env.bucket}/images/{n}" for n in names[:4]]
