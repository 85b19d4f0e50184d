"""What a person watching a run sees in Prefect: a progress bar and a summary table."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from autolabel.tasks.params import RunSummary, ShardResult


class Progress:
    """A Prefect progress artifact for one run, updated once per finished shard."""

    def __init__(self, run_id: int, total_shards: int) -> None:
        self.total = max(total_shards, 1)
        self.finished = 0
        created = create_progress_artifact(
            progress=0.0 if total_shards else 100.0,
            key=f"autolabel-run-{run_id}-progress",
            description=f"label run {run_id}: shards finished",
        )
        if not isinstance(created, UUID):  # only the async call returns a coroutine
            raise TypeError(f"expected an artifact id, got {type(created).__name__}")
        self._id = created

    def shard_done(self) -> None:
        self.finished += 1
        update_progress_artifact(self._id, progress=100.0 * self.finished / self.total)


def merge_seconds(results: list[ShardResult]) -> dict[str, float]:
    """Seconds per stage summed over shards."""
    total: dict[str, float] = {}
    for result in results:
        for stage, seconds in result.seconds.items():
            total[stage] = total.get(stage, 0.0) + seconds
    return {stage: round(seconds, 3) for stage, seconds in total.items()}


def summary_markdown(summary: RunSummary) -> str:
    """The end-of-run summary as Markdown."""
    lines = [
        f"# Label run {summary.run_id} ({summary.dataset}): {summary.status}",
        "",
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


def publish_summary(run_id: int, markdown: str) -> None:
    create_markdown_artifact(
        markdown, key=f"autolabel-run-{run_id}-summary", description="label run summary"
    )


class ProgressListener(Protocol):
    """Receives in-process progress: `planned(total)` once, then `written(done, failed)`."""

    def planned(self, total_images: int) -> None: ...

    def written(self, images_done: int, images_failed: int) -> None: ...


_listeners: list[ProgressListener] = []
_listeners_lock = threading.Lock()


@contextmanager
def listening(listener: ProgressListener) -> Iterator[None]:
    """Send this process's labeling progress to `listener` (e.g. a terminal progress bar)."""
    with _listeners_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _listeners_lock:
            _listeners.remove(listener)


def emit_planned(total_images: int) -> None:
    for listener in list(_listeners):
        listener.planned(total_images)


def emit_written(images_done: int, images_failed: int) -> None:
    for listener in list(_listeners):
        listener.written(images_done, images_failed)
