"""A review done in a real Label Studio comes back through `autolabel import-review`.

Our tasks are imported into a Label Studio 1.23.2 project; a reviewer's work is scripted through
its API as the editor submits it (predicted regions copied into an annotation under their ids,
without our `meta` and scores; masks in Label Studio's own brush RLE): on a.png the dog blob is
kept (accepted), the dog rectangle redrawn (corrected) and a cat drawn (added); on b.png the tall
cat is kept (accepted) and the wide dog deleted (rejected); c.png is left alone. The project's
Export > JSON file then goes through the command line: every stored prediction is kept, each
edit is applied, and importing the same file again changes nothing.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from autolabel.storage.db.engine import make_engine, session_scope
from autolabel.storage.db.tables import Annotation, ReviewEvent, ReviewStatus
from tests.cli_runner import run_in_process
from tests.integration.review_tools.label_studio_api import LabelStudioApi
from tests.integration.review_tools.label_studio_steps import (
    brush_input,
    decode_regions,
    encode_masks,
    import_into_label_studio,
)
from tests.unit.tasks.export.review_data import ReviewData
from tests.unit.tasks.review.review_edits import added_cat_mask, mask_of, redrawn_dog_mask

pytestmark = pytest.mark.integration

_EDITOR_KEYS = ("id", "type", "from_name", "to_name", "original_width", "original_height")


def _rows(data: ReviewData) -> dict[int, Annotation]:
    return data.annotations()


def _as_submitted(region: dict[str, Any], origin: str, rle: list[int] | None = None) -> Any:
    """A predicted region as the editor submits it in an annotation."""
    value = {**region["value"], "rle": rle or region["value"]["rle"]}
    kept = {k: region[k] for k in _EDITOR_KEYS}
    return {**kept, "image_rotation": 0, "value": value, "origin": origin}


def _review(
    api: LabelStudioApi, tasks: list[dict[str, Any]], ids: tuple[int, ...], work: Path
) -> dict[str, Any]:
    """Submit the review (the wide dog is left out: deleted); returns the masks drawn, (H, W)
    bool: "redrawn" (the dog rectangle's correction) and "added" (the new cat)."""
    blob, rect, tall, _ = ids
    drawn = {"redrawn": redrawn_dog_mask(), "added": added_cat_mask()}
    rle = encode_masks(drawn, work)
    regions = {r["id"]: r for task in tasks for p in task["predictions"] for r in p["result"]}
    a_png, b_png = tasks[0], tasks[1]
    added = {
        **_as_submitted(regions[f"a{blob}"], "manual", rle["added"]),
        "id": "Xk3_9aQ",  # an id the editor makes up
        "value": {"format": "rle", "rle": rle["added"], "brushlabels": ["cat"]},
    }
    api.annotate(
        a_png["id"],
        [
            _as_submitted(regions[f"a{blob}"], "prediction"),
            _as_submitted(regions[f"a{rect}"], "prediction-changed", rle["redrawn"]),
            added,
        ],
    )
    api.annotate(b_png["id"], [_as_submitted(regions[f"a{tall}"], "prediction")])
    return drawn


def _import(data: ReviewData, path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    args = ["import-review", "--dataset", data.dataset, "--format", "label-studio"]
    code, out, err = run_in_process(
        [*args, "--input", str(path), "--reviewer", "reviewer@example.com"], capsys
    )
    assert code == 0, err
    return out


def test_a_label_studio_review_comes_back_through_import_review(
    label_studio: LabelStudioApi,
    label_studio_data: ReviewData,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = label_studio_data
    ids = blob, rect, tall, wide = tuple(sorted(data.expected))
    project, tasks = import_into_label_studio(label_studio, data, tmp_path)
    drawn = _review(label_studio, tasks, ids, tmp_path / "encode")
    exported = tmp_path / "label-studio-export.json"
    exported.write_bytes(label_studio.export_json(project))

    # The export holds the two reviewed tasks, their regions as submitted (decoded by Label
    # Studio's own decoder).
    doc = json.loads(exported.read_text())
    assert sorted(t["id"] for t in doc) == sorted(t["id"] for t in tasks[:2])
    submitted = {
        f"{t['id']}/{r['id']}": brush_input(r) for t in doc for r in t["annotations"][0]["result"]
    }
    masks = decode_regions(submitted, tmp_path / "decode")
    a_id, b_id = tasks[0]["id"], tasks[1]["id"]
    np.testing.assert_array_equal(masks[f"{a_id}/a{rect}"], drawn["redrawn"])
    np.testing.assert_array_equal(masks[f"{a_id}/Xk3_9aQ"], drawn["added"])
    np.testing.assert_array_equal(masks[f"{a_id}/a{blob}"], data.expected[blob].mask)
    np.testing.assert_array_equal(masks[f"{b_id}/a{tall}"], data.expected[tall].mask)
    assert f"{b_id}/a{wide}" not in masks

    monkeypatch.setenv("AUTOLABEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUTOLABEL_DATABASE__URL", data.database_url.render_as_string())
    before = _rows(data)
    out = _import(data, exported, capsys)
    assert "2 accepted, 1 corrected, 1 rejected, 1 added" in out, out
    rows = _rows(data)
    for aid, old in before.items():  # every stored prediction kept, pixels and all
        assert (rows[aid].seg_counts, rows[aid].bbox_x, rows[aid].score) == (
            old.seg_counts,
            old.bbox_x,
            old.score,
        )
    assert {aid: rows[aid].review_status for aid in ids} == {
        blob: ReviewStatus.ACCEPTED,
        rect: ReviewStatus.SUPERSEDED,
        tall: ReviewStatus.ACCEPTED,
        wide: ReviewStatus.REJECTED,
    }
    new = [r for aid, r in rows.items() if aid not in before]
    assert all(r.review_status is ReviewStatus.ACCEPTED for r in new)
    new_masks = sorted(
        (mask_of(r.seg_counts, r.seg_height, r.seg_width) for r in new), key=lambda m: m.sum()
    )
    wanted = sorted(drawn.values(), key=lambda m: m.sum())
    assert len(new_masks) == len(wanted)
    for got, want in zip(new_masks, wanted, strict=True):
        np.testing.assert_array_equal(got, want)
    engine = make_engine(data.database_url)
    with session_scope(engine) as session:
        events = session.scalars(select(ReviewEvent)).all()
        decisions = sorted(e.decision.value for e in events)
        assert decisions == ["accepted", "accepted", "added", "corrected", "rejected"]
        # Label Studio's export names the annotator by user id only (`completed_by: 1`), which
        # the import records as the reviewer, before --reviewer.
        user = doc[0]["annotations"][0]["completed_by"]
        assert {e.reviewer for e in events} == {f"label-studio user {user}"}
    engine.dispose()

    again = _import(data, exported, capsys)
    assert "was imported before" in again, again
    assert again.rstrip().endswith("no change"), again
    assert {k: (r.review_status, r.seg_counts) for k, r in _rows(data).items()} == {
        k: (r.review_status, r.seg_counts) for k, r in rows.items()
    }
