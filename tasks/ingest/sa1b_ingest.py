"""SA-1B shards from a local folder into object storage: check each one, upload the good ones."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from autolabel.storage.sa1b import BadSample, read_shard
from autolabel.tasks.resources import Resources


class Sa1bIngestResult(BaseModel):
    """What an ingest uploaded and what it skipped."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(description="Store URL (folder) the shards went to.")
    uploaded: list[str] = Field(default_factory=list, description="Shard file names uploaded.")
    skipped: dict[str, str] = Field(
        default_factory=dict,
        description="Shard file name -> each of its bad items by name, with the reason.",
    )


def validate_shards(folder: Path) -> tuple[list[Path], dict[str, str]]:
    """(readable shards, shard name -> reason) among `folder`'s `*.tar` files.

    A shard with any bad item (see `autolabel.storage.sa1b.read_shard`) is skipped whole; its
    reason names every bad item with the item's reason, separated by "; ".
    """
    good, bad = [], {}
    for path in sorted(folder.glob("*.tar")):
        try:
            with path.open("rb") as stream:
                items = [i for i in read_shard(stream, name=path.name) if isinstance(i, BadSample)]
        except OSError as exc:
            bad[path.name] = f"cannot read the file: {exc}"
            continue
        if items:
            bad[path.name] = f"{len(items)} bad item(s): " + "; ".join(
                f"{item.name}: {item.reason}" for item in items
            )
        else:
            good.append(path)
    return good, bad


def ingest_shards(folder: Path, to: str, resources: Resources) -> Sa1bIngestResult:
    """Upload the readable shards of `folder` to the store at `to`; report the others by name."""
    good, bad = validate_shards(folder)
    store = resources.store(to)
    for path in good:
        store.put_file(path.name, path)
    return Sa1bIngestResult(url=store.url, uploaded=[p.name for p in good], skipped=bad)
