"""Ingest checks each shard: one with any bad item is skipped whole, each bad item named."""

from pathlib import Path

from autolabel.tasks.ingest.sa1b_ingest import validate_shards
from tests.synthetic import write_synthetic_shards, write_with_bad_rles


def test_a_shard_with_bad_items_is_skipped_and_each_item_named(tmp_path: Path) -> None:
    write_synthetic_shards(tmp_path, shards=1, images_per_shard=2, height=48, width=64)
    write_with_bad_rles(tmp_path / "tmp", count=4, bad_ids={2, 4}, seed=1, shard_name="x.tar")
    (tmp_path / "tmp" / "x.tar").rename(tmp_path / "sa_000001.tar")
    cut = tmp_path / "sa_000002.tar"
    cut.write_bytes((tmp_path / "sa_000000.tar").read_bytes()[:2000])
    good, bad = validate_shards(tmp_path)
    assert good == [tmp_path / "sa_000000.tar"]
    assert list(bad) == ["sa_000001.tar", "sa_000002.tar"]
    assert bad["sa_000001.tar"].startswith("2 bad item(s): sa_000001.tar:sa_2.json: ValueError: ")
    assert "; sa_000001.tar:sa_4.json: ValueError: " in bad["sa_000001.tar"]
    assert bad["sa_000002.tar"].startswith("1 bad item(s): sa_000002.tar: tar sa_000002.tar is ")
