"""What a person watching a run sees: running totals, a progress callback and the summary text.

Progress goes to whoever asked for it: the CLI binds a `ProgressSink` around the flow call with
`reporting_to(sink)`, and the shard task hands `current_sink().written` to `run_shard` as its
callback. Without a binding, progress goes nowhere (the Prefect progress artifact is separate:
`autolabel.tasks.labeling.label_tasks`).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # the job module imports the detector's (torch) config; the CLI imports this
    from autolabel.tasks.labeling.job import RunSummary, ShardResult


class ProgressSink(Protocol):
    """Receives labeling progress: `planned(total)` once, then `written(done, failed)`."""

    def planned(self, total_images: int) -> None: ...

    def written(self, images_done: int, images_failed: int) -> None: ...


class NoProgress:
    """The sink used when nobody listens."""

    def planned(self, total_images: int) -> None:
        del total_images

    def written(self, images_done: int, images_failed: int) -> None:
        del images_done, images_failed


_NOBODY = NoProgress()
_sink: ContextVar[ProgressSink | None] = ContextVar("autolabel_progress", default=None)


def current_sink() -> ProgressSink:
    """The sink bound by `reporting_to` around this flow call, or a `NoProgress`."""
    return _sink.get() or _NOBODY


@contextmanager
def reporting_to(sink: ProgressSink) -> Iterator[None]:
    """Send the progress of flows called inside this block to `sink`."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)


class ShardTally:
    """Running totals over the finished shards of one run."""

    def __init__(self, max_failure_fraction: float) -> None:
        self.max_failure_fraction = max_failure_fraction
        self.results: list[ShardResult] = []

    def add(self, result: "ShardResult") -> None:
        self.results.append(result)

    @property
    def processed(self) -> int:
        return sum(r.images_done + r.images_failed for r in self.results)

    @property
    def failed(self) -> int:
        return sum(r.images_failed for r in self.results)

    def failures(self) -> dict[str, int]:
        """Failed images by reason, over all shards."""
        merged: dict[str, int] = {}
        for r in self.results:
            for reason, n in r.failures.items():
                merged[reason] = merged.get(reason, 0) + n
        return merged

    def seconds(self) -> dict[str, float]:
        """Seconds per stage summed over shards."""
        total: dict[str, float] = {}
        for result in self.results:
            for stage, seconds in result.seconds.items():
                total[stage] = total.get(stage, 0.0) + seconds
        return {stage: round(seconds, 3) for stage, seconds in total.items()}

    def too_many_failures(self) -> bool:
        return self.processed > 0 and self.failed / self.processed > self.max_failure_fraction


def summary_markdown(summary: "RunSummary") -> str:
    """The end-of-run summary as Markdown."""
    lines = [
        f"# Label run {summary.run_id} ({summary.dataset}): {summary.status}",
        "",
        *([f"Reason: {summary.reason}", ""] if summary.reason else []),
        "| images done | failed | skipped | annotations | images/s |",
        "|---|---|---|---|---|",
        f"| {summary.images_done} | {summary.images_failed} | {summary.images_skipped} "
        f"| {summary.annotations} | {summary.images_per_second:.2f} |",
        "",
        "| category | annotations |",
        "|---|---|",
    ]
    lines += [f"| {name} | {n} |" for name, n in sorted(summary.annotations_per_category.items())]
    if summary.failures:
        lines += ["", "| failure reason | images |", "|---|---|"]
        lines += [f"| {reason} | {n} |" for reason, n in sorted(summary.failures.items())]
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {stage} | {seconds} |" for stage, seconds in summary.seconds.items()]
    return "\n".join(lines)
