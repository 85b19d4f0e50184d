"""The quality report of a dataset or of one label run: per-category counts, score histograms,
agreement with the reviewed labels, and sample overlays, written as one self-contained HTML page.

Counts and histograms are aggregated by the database (`autolabel.storage.db.quality_rows`).
The agreement (`autolabel.tasks.quality.agreement`) reads the reviewed images a chunk at a
time. Sample images are read through the object stores and decoded like labeling does; an image
that cannot be read or decoded is listed in the report, never fatal.
"""

import io
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from PIL import Image as PILImage

from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.quality_rows import (
    SCORE_FIELDS,
    CategoryCounts,
    QualityScope,
    SampleImage,
    category_counts,
    image_sizes,
    overlay_instances,
    reviewed_predictions,
    reviewed_scope_image_ids,
    sample_images,
    score_histogram,
)
from autolabel.storage.db.reviewed_labels import reviewed_labels
from autolabel.storage.db.tables import ReviewStatus
from autolabel.storage.errors import StorageError
from autolabel.storage.images import decode_image
from autolabel.storage.mask_clip import fit_mask
from autolabel.storage.overlay import render_overlay
from autolabel.storage.rle import decode_rle
from autolabel.tasks.quality.agreement import AgreementTally, match_image
from autolabel.tasks.quality.report_data import (
    AgreementRow,
    CategoryRow,
    QualityReport,
    QualityRequest,
    QualityResult,
    SampleOverlay,
    ScoreField,
    UnreadableImage,
)
from autolabel.tasks.quality.report_html import render_report_html
from autolabel.tasks.resources import Resources

REVIEWED_CHUNK = 1000  # reviewed images whose predictions and labels are in memory at once
OVERLAY_MAX_SIDE = 800
_STATUS_NOTE = {ReviewStatus.REJECTED: " rejected", ReviewStatus.SUPERSEDED: " corrected"}


def _scope(request: QualityRequest, resources: Resources) -> QualityScope:
    """The request's scope, after checking that the dataset (and the run, when given) exist."""
    with session_scope(resources.engine) as session:
        dataset_id = queries.require_dataset(session, name=request.dataset, run_id=request.run_id)
    return QualityScope(dataset_id=dataset_id, run_id=request.run_id)


def _category_row(counts: CategoryCounts) -> CategoryRow:
    by = counts.predictions
    return CategoryRow(
        category=counts.category,
        predictions=sum(by.values()),
        unreviewed=by[ReviewStatus.UNREVIEWED.value],
        accepted=by[ReviewStatus.ACCEPTED.value],
        rejected=by[ReviewStatus.REJECTED.value],
        superseded=by[ReviewStatus.SUPERSEDED.value],
        review_labels=counts.review_labels,
    )


def _agreement(
    scope: QualityScope, iou_threshold: float, resources: Resources
) -> AgreementTally | None:
    """Tallies over the scope's reviewed images; None when it has none."""
    with session_scope(resources.engine) as session:
        image_ids = reviewed_scope_image_ids(session, scope=scope)
    if not image_ids:
        return None
    tally = AgreementTally()
    for start in range(0, len(image_ids), REVIEWED_CHUNK):
        chunk = image_ids[start : start + REVIEWED_CHUNK]
        with session_scope(resources.engine) as session:
            labels = reviewed_labels(session, dataset_id=scope.dataset_id, image_ids=chunk)
            predictions = reviewed_predictions(session, scope=scope, image_ids=chunk)
            sizes = image_sizes(session, image_ids=chunk)
        for image_id in chunk:
            tally.add_image(
                match_image(
                    predictions.get(image_id, []),
                    labels.get(image_id, []),
                    iou_threshold=iou_threshold,
                    size=sizes.get(image_id),
                )
            )
    return tally


def _agreement_rows(
    tally: AgreementTally, names: dict[int, str], order: Sequence[int]
) -> list[AgreementRow]:
    ids = [i for i in order if i in tally.categories]
    ids += sorted(set(tally.categories) - set(ids))
    return [AgreementRow.of(names.get(i, f"category {i}"), tally.categories[i]) for i in ids]


def _jpeg(png: bytes) -> bytes:
    buffer = io.BytesIO()
    with PILImage.open(io.BytesIO(png)) as image:
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _overlay(
    sample: SampleImage, scope: QualityScope, resources: Resources
) -> SampleOverlay | UnreadableImage:
    """One sample drawn with its instances, or why its image could not be read."""
    try:
        store, key = resources.open_object(sample.storage_key)
        rgb = decode_image(store.get(key), max_pixels=resources.config.max_image_pixels).rgb
    except StorageError as exc:  # missing, undecodable, unreachable: listed, never fatal
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return UnreadableImage(storage_key=sample.storage_key, reason=reason)
    with session_scope(resources.engine) as session:
        instances = overlay_instances(session, scope=scope, image_id=sample.image_id)
    height, width = rgb.shape[:2]
    masks = [fit_mask(decode_rle(i.rle), height=height, width=width) for i in instances]
    captions = []
    for instance in instances:
        if instance.by_review:
            captions.append(f"{instance.category} (reviewer)")
            continue
        score = "" if instance.score is None else f" {instance.score:.2f}"
        captions.append(f"{instance.category}{score}{_STATUS_NOTE.get(instance.review_status, '')}")
    png = render_overlay(
        rgb, masks, [i.bbox_xywh_px for i in instances], captions, max_side=OVERLAY_MAX_SIDE
    )
    reviewed = "reviewed" if sample.reviewed else "not reviewed"
    caption = f"{sample.storage_key} ({reviewed}, {len(instances)} masks)"
    return SampleOverlay(
        image_id=sample.image_id, storage_key=sample.storage_key, jpeg=_jpeg(png), caption=caption
    )


def _histograms(
    scope: QualityScope, names: dict[int, str], bins: int, resources: Resources
) -> dict[ScoreField, dict[str, list[int]]]:
    out: dict[ScoreField, dict[str, list[int]]] = {}
    with session_scope(resources.engine) as session:
        for name in SCORE_FIELDS:
            counts = score_histogram(session, scope=scope, field=name, bins=bins)
            if counts:
                out[name] = {names[c]: counts[c] for c in names if c in counts}
    return out


def compute_quality_report(request: QualityRequest, resources: Resources) -> QualityReport:
    """Everything the page shows; `result.output` is the request's output as given."""
    started = time.perf_counter()
    scope = _scope(request, resources)
    with session_scope(resources.engine) as session:
        counts = category_counts(session, scope=scope)
        samples = sample_images(session, scope=scope, limit=request.samples)
    names = {c.category_id: c.category for c in counts}
    histograms = _histograms(scope, names, request.bins, resources)
    tally = _agreement(scope, request.iou_threshold, resources)
    drawn = [_overlay(sample, scope, resources) for sample in samples]
    rows = [_category_row(c) for c in counts]
    result = QualityResult(
        output=request.output,
        dataset=request.dataset,
        dataset_id=scope.dataset_id,
        run_id=scope.run_id,
        predictions=sum(r.predictions for r in rows),
        reviewed_images=0 if tally is None else tally.images,
        iou_threshold=request.iou_threshold,
        categories=rows,
        agreement=None if tally is None else _agreement_rows(tally, names, list(names)),
        agreement_total=None if tally is None else AgreementRow.of("all", tally.total()),
        samples=sum(isinstance(d, SampleOverlay) for d in drawn),
        unreadable=[d for d in drawn if isinstance(d, UnreadableImage)],
        seconds=round(time.perf_counter() - started, 3),
    )
    return QualityReport(
        result=result,
        bins=request.bins,
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        histograms=histograms,
        overlays=[d for d in drawn if isinstance(d, SampleOverlay)],
    )


def write_quality_report(request: QualityRequest, resources: Resources) -> QualityResult:
    """Compute the report, write its HTML page to `request.output`, return its tables."""
    report = compute_quality_report(request, resources)
    page = render_report_html(report).encode("utf-8")
    where = resources.put_output(request.output, page, content_type="text/html; charset=utf-8")
    return report.result.model_copy(update={"output": where})
