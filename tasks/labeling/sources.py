"""A job's images: list the source (or read a manifest), register them, and plan shards."""

from collections.abc import Iterator
from itertools import islice

from autolabel.storage.db import repository
from autolabel.storage.db.engine import session_scope
from autolabel.storage.db.records import ImageIn
from autolabel.storage.errors import FormatError
from autolabel.storage.manifest import ManifestEntry, read_manifest
from autolabel.storage.urls import join_url, key_under
from autolabel.tasks.labeling.job import LabelJob, ShardRef
from autolabel.tasks.labeling.shard import resolve_image
from autolabel.tasks.resources import Resources

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
REGISTER_CHUNK = 1000


def iter_source_images(job: LabelJob, resources: Resources) -> Iterator[ImageIn]:
    """Stream the images a job names, as full URLs with etag and size (never all in memory)."""
    if job.manifest is not None:
        yield from _iter_manifest(job, job.manifest, resources)
        return
    store = resources.store(job.source)
    suffixes = None if job.pattern else IMAGE_SUFFIXES
    for info in store.list(suffixes=suffixes, pattern=job.pattern):
        yield ImageIn(
            storage_key=join_url(job.source, info.key), etag=info.etag, size_bytes=info.size
        )


def allowed_url(job: LabelJob, entry: ManifestEntry, manifest: str) -> str:
    """The image URL of a manifest entry, if it lies under the job's source or one of its
    `allowed_roots` (a manifest is untrusted input); else `FormatError` naming the line."""
    url = entry.url if entry.url is not None else join_url(job.source, str(entry.key))
    if any(key_under(root, url) is not None for root in job.image_roots):
        return url
    raise FormatError(
        f"manifest {manifest} line {entry.line}: {url} is outside the job's source "
        f"{job.source}"
        + (f" and its allowed roots {job.allowed_roots}" if job.allowed_roots else "")
        + "; name the store with --allow-root to label images there"
    )


def _iter_manifest(job: LabelJob, manifest: str, resources: Resources) -> Iterator[ImageIn]:
    manifest_store, manifest_key = resolve_image(resources, job.image_roots, manifest)
    with manifest_store.open(manifest_key) as stream:
        for entry in read_manifest(stream, name=manifest):
            url = allowed_url(job, entry, manifest)
            store, key = resolve_image(resources, job.image_roots, url)
            info = store.head(key)
            yield ImageIn(storage_key=url, etag=info.etag, size_bytes=info.size)


def register_job_images(job: LabelJob, dataset_id: int, resources: Resources) -> int:
    """Upsert the job's images into the dataset (1,000 per transaction); returns how many."""
    images = iter_source_images(job, resources)
    total = 0
    while chunk := list(islice(images, REGISTER_CHUNK)):
        with session_scope(resources.engine) as session:
            repository.register_images(session, dataset_id=dataset_id, images=chunk)
        total += len(chunk)
    return total


def plan_shards(
    dataset_id: int, job: LabelJob, work_key: str, resources: Resources
) -> list[ShardRef]:
    """Split the images still to do under `work_key` into shards of `job.shard_size` ids.

    Images that failed at their current etag are left out unless `job.retry_failed`.
    """
    with session_scope(resources.engine) as session:
        batches = repository.iter_pending_image_ids(
            session,
            dataset_id=dataset_id,
            work_key=work_key,
            batch_size=job.shard_size,
            retry_failed=job.retry_failed,
        )
        return [ShardRef(index=i, image_ids=ids) for i, ids in enumerate(batches)]
