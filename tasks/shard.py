"""One shard of a labeling run, end to end (plain Python; `autolabel.tasks.label` wraps it)."""

from functools import partial

from autolabel.models.runtime.adaptive import AdaptiveBatcher
from autolabel.storage.db import queries
from autolabel.storage.db.bulk import write_image_batch
from autolabel.storage.db.engine import session_scope
from autolabel.storage.errors import UnsafeKeyError
from autolabel.storage.manifest import split_url
from autolabel.storage.objectstore import ObjectStore
from autolabel.tasks import _resources
from autolabel.tasks.labeling import BoxSource, ImageRef, Inferred, ShardLabeler, fetch
from autolabel.tasks.params import LabelJob, RunContext, ShardRef, ShardResult
from autolabel.tasks.pipeline import run_pipeline
from autolabel.tasks.report import emit_written

MAX_PIXELS = 100_000_000


def join_url(root: str, key: str) -> str:
    """The full URL of `key` in the store rooted at `root`."""
    return f"{root.rstrip('/')}/{key}"


def resolver(source: str) -> "partial[tuple[ObjectStore, str]]":
    """Maps an image URL to (store, key): the job's source store, or another S3 bucket."""
    return partial(_resolve, source.rstrip("/"))


def _resolve(source: str, url: str) -> tuple[ObjectStore, str]:
    if url.startswith(source + "/"):
        return _resources.store(source), url[len(source) + 1 :]
    if url.startswith("s3://"):
        return open_url(url)
    raise UnsafeKeyError(f"expected an image under {source} or an s3:// URL, got {url!r}")


def open_url(url: str) -> tuple[ObjectStore, str]:
    """(store, key) of one object's full URL (`s3://bucket/key` or `file:///folder/name`)."""
    root, key = split_url(url)
    return _resources.store(root), key


class _Counter:
    """Accumulates what the writer thread stored."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.annotations = 0


def run_shard(
    shard: ShardRef, job: LabelJob, ctx: RunContext, box_source: BoxSource
) -> ShardResult:
    """Fetch, label and store the images of `shard`; safe to rerun (idempotent writes)."""
    engine = _resources.engine()
    with session_scope(engine) as session:
        rows = queries.image_refs(session, image_ids=shard.image_ids)
    refs = [ImageRef(image_id=i, url=url, etag=etag) for i, url, etag in rows]
    labeler = ShardLabeler(
        box_source=box_source,
        segmenter=_resources.segmenter(job.segmenter, random_weights=job.random_weights),
        category_ids=ctx.category_ids,
        model_version=ctx.segmenter_version,
        batcher=AdaptiveBatcher(job.batch_size),
        detect_batcher=AdaptiveBatcher(job.batch_size),
    )
    counter = _Counter()

    def write(results: list[Inferred]) -> None:
        outcomes = labeler.finish(results)
        with session_scope(engine) as session:
            stats = write_image_batch(
                session,
                dataset_id=ctx.dataset_id,
                run_id=ctx.run_id,
                work_key=ctx.work_key,
                outcomes=outcomes,
            )
        counter.done += stats.images_done
        counter.failed += stats.images_failed
        emit_written(stats.images_done, stats.images_failed)
        counter.annotations += sum(len(o.annotations) for o in outcomes)

    times = run_pipeline(
        refs,
        fetch=partial(fetch, resolve=resolver(job.source), max_pixels=MAX_PIXELS),
        infer=labeler.infer,
        write=write,
        batch_size=job.batch_size,
        io_threads=job.io_threads,
    )
    return ShardResult(
        index=shard.index,
        images_done=counter.done,
        images_failed=counter.failed,
        annotations=counter.annotations,
        failures=dict(labeler.failures),
        seconds=times.as_dict(),
    )
