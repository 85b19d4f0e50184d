"""Choose a review set from the stored annotations, save it, and export exactly those images.

`sample_for_review` reads the signals of a dataset (or one label run) from the database
(`autolabel.storage.db.sampling_rows`), scores and chooses with
`autolabel.tasks.sampling.uncertainty`, and returns a `ReviewSelection`: the request, what was
scored and the chosen images with their scores and drivers. `save_selection` writes it as JSON
(a local file or a `file://` / `s3://` object), `load_selection` reads it back, and
`export_selection` writes a review export (`autolabel.tasks.export.review_export`) of exactly
the chosen images. Nothing stored changes. Used by `autolabel sample-review`,
`autolabel export-review --images-from` and the flow `sample-for-review`.
"""

from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autolabel.storage.db import queries
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.sampling_rows import (
    SignalFilter,
    category_counts,
    category_names,
    iter_signal_rows,
)
from autolabel.storage.errors import FormatError, StorageConfigError
from autolabel.storage.urls import is_url
from autolabel.tasks.export.review_export import (
    ReviewExportRequest,
    ReviewExportResult,
    export_review,
)
from autolabel.tasks.resources import Resources
from autolabel.tasks.sampling.uncertainty import (
    ChosenImage,
    SamplingPolicy,
    choose,
    score_images,
)

SELECTION_FORMAT: Final = "autolabel-review-selection/1"


class SampleRequest(BaseModel):
    """Which annotations to sample from, and the policy (budget, weights, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1, description="Dataset name.")
    run_id: int | None = Field(None, description="Only this label run's images and annotations.")
    include_reviewed: bool = Field(
        False, description="Also sample images a reviewer already decided on."
    )
    policy: SamplingPolicy


class ReviewSelection(BaseModel):
    """A chosen review set: what was asked, what was scored, and the images, best first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["autolabel-review-selection/1"] = SELECTION_FORMAT
    dataset: str
    run_id: int | None
    include_reviewed: bool
    policy: SamplingPolicy
    scored_images: int = Field(description="Images with at least one scored annotation.")
    scored_annotations: int
    budget_used: int = Field(description="Images, or annotations, the chosen images take.")
    chosen: list[ChosenImage]

    @property
    def image_ids(self) -> tuple[int, ...]:
        """Database ids of the chosen images, best first."""
        return tuple(image.image_id for image in self.chosen)


def _dataset_id(request: SampleRequest, resources: Resources) -> int:
    with session_scope(resources.engine) as session:
        return queries.require_dataset(session, name=request.dataset, run_id=request.run_id)


def sample_for_review(request: SampleRequest, resources: Resources) -> ReviewSelection:
    """Score the selected annotations and choose the review set (one streaming read)."""
    dataset_id = _dataset_id(request, resources)
    flt = SignalFilter(run_id=request.run_id, include_reviewed=request.include_reviewed)
    policy = request.policy
    with session_scope(resources.engine) as session:
        counts = category_counts(session, dataset_id=dataset_id, flt=flt)
        names = category_names(session, dataset_id=dataset_id)
        rows = iter_signal_rows(session, dataset_id=dataset_id, flt=flt)
        candidates, n_annotations = score_images(rows, counts=counts, policy=policy)
    choice = choose(
        candidates, policy=policy, counts=counts, names=names, scored_annotations=n_annotations
    )
    return ReviewSelection(
        dataset=request.dataset,
        run_id=request.run_id,
        include_reviewed=request.include_reviewed,
        policy=policy,
        scored_images=choice.scored_images,
        scored_annotations=choice.scored_annotations,
        budget_used=choice.budget_used,
        chosen=choice.chosen,
    )


def save_selection(selection: ReviewSelection, output: str, resources: Resources) -> str:
    """Write `selection` as JSON to a local file (atomically) or a store URL; returns where."""
    data = (selection.model_dump_json(indent=2) + "\n").encode()
    return resources.put_output(output, data, content_type="application/json")


def load_selection(source: str, resources: Resources) -> ReviewSelection:
    """Read a selection `save_selection` wrote (a local file or a store URL)."""
    if is_url(source):
        store, key = resources.open_object(source)
        data = store.get(key)
    else:
        try:
            data = Path(source).expanduser().read_bytes()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise StorageConfigError(f"cannot read the selection {source}: {reason}") from exc
    try:
        return ReviewSelection.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise FormatError(
            f"expected a review selection written by `autolabel sample-review` in {source}, "
            f"got {where}: {first['msg']}"
        ) from None


def restrict_to_selection(
    request: ReviewExportRequest, selection: ReviewSelection
) -> ReviewExportRequest:
    """`request` limited to the selection's images; its run is the selection's unless given."""
    if request.dataset != selection.dataset:
        raise StorageConfigError(
            f"expected a selection of dataset {request.dataset!r}, got one of {selection.dataset!r}"
        )
    run_id = selection.run_id if request.run_id is None else request.run_id
    if selection.run_id is not None and run_id != selection.run_id:
        raise StorageConfigError(
            f"expected the selection's run {selection.run_id}, got run {request.run_id}"
        )
    fields = request.model_dump() | {"run_id": run_id, "image_ids": selection.image_ids}
    return ReviewExportRequest.model_validate(fields)


def export_selection(
    selection: ReviewSelection, request: ReviewExportRequest, resources: Resources
) -> ReviewExportResult:
    """Write the review export `request` asks for, of exactly the selection's images."""
    return export_review(restrict_to_selection(request, selection), resources)
