"""What a quality report holds: the request, the per-category rows, and the result a flow
returns (small: tables only; the page with its plots and overlays goes to `output`)."""

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from autolabel.storage.db.quality_rows import SCORE_FIELDS, ScoreField
from autolabel.tasks.quality.agreement import CategoryTally

__all__ = [
    "SCORE_FIELDS",
    "AgreementRow",
    "CategoryRow",
    "QualityReport",
    "QualityRequest",
    "QualityResult",
    "SampleOverlay",
    "ScoreField",
    "UnreadableImage",
]


class QualityRequest(BaseModel):
    """Which dataset (or run) to report on, and where the HTML page goes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1, description="Dataset name.")
    output: str = Field(
        min_length=1, description="Local path, file:// or s3:// URL of the HTML page."
    )
    run_id: int | None = Field(None, description="Only this label run's images and predictions.")
    samples: int = Field(6, ge=0, le=50, description="Images drawn with their masks.")
    iou_threshold: float = Field(
        0.5, gt=0.0, le=1.0, description="Lowest mask IoU of a prediction matching a label."
    )
    bins: int = Field(20, ge=2, le=100, description="Bins of the score histograms over [0, 1].")


class CategoryRow(BaseModel):
    """One category's predictions by review status, and the labels reviewers made."""

    model_config = ConfigDict(frozen=True)

    category: str
    predictions: int
    unreviewed: int
    accepted: int
    rejected: int
    superseded: int
    review_labels: int


class AgreementRow(BaseModel):
    """Agreement of one category's predictions with the reviewed labels (None: undefined)."""

    model_config = ConfigDict(frozen=True)

    category: str
    tp: int
    fp: int
    fn: int
    precision: float | None
    recall: float | None
    f1: float | None
    mean_iou: float | None

    @classmethod
    def of(cls, category: str, tally: CategoryTally) -> "AgreementRow":
        """The row of a tally (ratios rounded to 4 decimals)."""

        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return cls(
            category=category,
            tp=tally.tp,
            fp=tally.fp,
            fn=tally.fn,
            precision=r(tally.precision),
            recall=r(tally.recall),
            f1=r(tally.f1),
            mean_iou=r(tally.mean_iou),
        )


class UnreadableImage(BaseModel):
    """A sample image that could not be read or decoded, and why (one line)."""

    model_config = ConfigDict(frozen=True)

    storage_key: str
    reason: str


class QualityResult(BaseModel):
    """What a report found, and where its page is (what a flow returns and publishes).

    `agreement` is None when the scope has no reviewed image; `agreement_total` sums its rows.
    """

    model_config = ConfigDict(frozen=True)

    output: str
    dataset: str
    dataset_id: int
    run_id: int | None
    predictions: int
    reviewed_images: int
    iou_threshold: float
    categories: list[CategoryRow]
    agreement: list[AgreementRow] | None
    agreement_total: AgreementRow | None
    samples: int
    unreadable: list[UnreadableImage] = Field(default_factory=list)
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleOverlay:
    """One sample image with its masks drawn: `jpeg` bytes, a caption of plain text."""

    image_id: int
    storage_key: str
    jpeg: bytes
    caption: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QualityReport:
    """Everything the HTML page shows (in memory only: the overlays are image bytes).

    Attributes:
        result: The tables (counts, agreement) and where the page goes.
        histograms: Score field -> category -> `bins` counts over [0, 1] (fields without any
            value are absent).
        generated_at: ISO 8601 UTC time the report was computed.
    """

    result: QualityResult
    bins: int
    generated_at: str
    histograms: dict[ScoreField, dict[str, list[int]]]
    overlays: list[SampleOverlay] = field(default_factory=list)
