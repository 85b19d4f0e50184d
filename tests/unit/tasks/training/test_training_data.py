"""Streaming SA-1B data: rank/worker splits, exact resume position, bad shards and bad samples
skipped (the rest of their unit is read), the tally of used and skipped samples."""

import logging
from pathlib import Path

import pytest
import torch

from autolabel.tasks.training.data import (
    BadData,
    DataItem,
    DataTally,
    Sa1bStream,
    StreamConfig,
    StreamPosition,
    list_units,
    make_loader,
)
from tests.synthetic import write_synthetic_shards, write_with_bad_rles

CONFIG = StreamConfig(input_size=128, max_masks=4, seed=3)


def _shards(tmp_path: Path, shards: int = 4, per: int = 3) -> str:
    write_synthetic_shards(tmp_path, shards=shards, images_per_shard=per, height=48, width=64)
    return str(tmp_path)


def _ids(stream: Sa1bStream) -> list[int]:
    return [item.sample.sample.image_id for item in stream if isinstance(item, DataItem)]


@pytest.mark.parametrize("shards", [4, 1])
def test_ranks_read_disjoint_parts_that_cover_the_data(tmp_path: Path, shards: int) -> None:
    source = _shards(tmp_path, shards=shards, per=12 // shards)
    units = list_units(source)
    per_rank = [_ids(Sa1bStream(source, units, CONFIG, rank=r, world_size=2)) for r in range(2)]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == list(range(1, 13))
    assert abs(len(per_rank[0]) - len(per_rank[1])) <= 3


def test_dataloader_workers_split_units(tmp_path: Path) -> None:
    source = _shards(tmp_path)
    stream = Sa1bStream(source, list_units(source), CONFIG)
    items = [i for i in make_loader(stream, num_workers=2) if isinstance(i, DataItem)]
    assert sorted(i.sample.sample.image_id for i in items) == list(range(1, 13))
    workers = {i.unit: i.slot_key.split(":")[1] for i in items}
    assert set(workers.values()) == {"0", "1"}


def test_resumed_stream_continues_with_identical_samples(tmp_path: Path) -> None:
    source = _shards(tmp_path)
    units = list_units(source)
    full = [i for i in Sa1bStream(source, units, CONFIG) if isinstance(i, DataItem)]
    position = StreamPosition()
    for item in full[:5]:
        position.advance(item)
    position = StreamPosition.from_dict(position.to_dict())
    rest = [
        i for i in Sa1bStream(source, units, CONFIG, position=position) if isinstance(i, DataItem)
    ]
    assert len(rest) == len(full) - 5
    for a, b in zip(full[5:], rest, strict=True):
        assert (a.unit, a.index) == (b.unit, b.index)
        assert torch.equal(a.sample.sample.image, b.sample.sample.image)
        assert torch.equal(a.sample.sample.masks, b.sample.sample.masks)
        assert torch.equal(a.sample.prompts.point_coords, b.sample.prompts.point_coords)
        assert torch.equal(a.sample.prompts.boxes_xyxy, b.sample.prompts.boxes_xyxy)


def test_epochs_change_the_order_deterministically(tmp_path: Path) -> None:
    source = _shards(tmp_path)
    units = list_units(source)
    e0 = _ids(Sa1bStream(source, units, CONFIG))
    e1 = _ids(Sa1bStream(source, units, CONFIG, position=StreamPosition(epoch=1)))
    again = _ids(Sa1bStream(source, units, CONFIG, position=StreamPosition(epoch=1)))
    assert sorted(e0) == sorted(e1)
    assert e1 == again
    assert e0 != e1


def test_truncated_and_malformed_shards_are_reported_and_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = _shards(tmp_path)
    truncated = tmp_path / "sa_000001.tar"
    truncated.write_bytes(truncated.read_bytes()[:3000])
    (tmp_path / "sa_000002.tar").write_bytes(b"this is not a tar archive" * 40)
    units = list_units(source)
    with caplog.at_level(logging.WARNING):
        items = list(Sa1bStream(source, units, CONFIG))
    bad = sorted(i.name for i in items if isinstance(i, BadData))
    assert len(bad) == 2
    assert bad[0].endswith("sa_000001.tar")
    assert bad[1].endswith("sa_000002.tar")
    good = sorted(i.sample.sample.image_id for i in items if isinstance(i, DataItem))
    assert set(range(1, 4)) | set(range(10, 13)) <= set(good)
    assert "sa_000001.tar" in caplog.text
    assert "sa_000002.tar" in caplog.text


@pytest.mark.parametrize("shard_name", [None, "sa_000000.tar"])
def test_a_bad_sample_is_reported_and_the_rest_of_its_unit_is_read(
    tmp_path: Path, shard_name: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    write_with_bad_rles(tmp_path, count=4, bad_ids={2}, seed=2, shard_name=shard_name)
    source = str(tmp_path)
    units = list_units(source)
    with caplog.at_level(logging.WARNING):
        items = list(Sa1bStream(source, units, CONFIG))
    assert [i.sample.sample.image_id for i in items if isinstance(i, DataItem)] == [1, 3, 4]
    bad = [i for i in items if isinstance(i, BadData)]
    assert len(bad) == 1
    assert bad[0].name.endswith("sa_2.json")
    assert "expected an RLE of size [48, 64]" in bad[0].reason
    assert "sa_2.json" in caplog.text
    # Two ranks share the one unit sample by sample: the bad item is reported exactly once.
    per_rank = [list(Sa1bStream(source, units, CONFIG, rank=r, world_size=2)) for r in range(2)]
    assert sum(isinstance(i, BadData) for rank in per_rank for i in rank) == 1
    ids = [i.sample.sample.image_id for rank in per_rank for i in rank if isinstance(i, DataItem)]
    assert sorted(ids) == [1, 3, 4]


def test_resume_after_a_bad_sample_yields_what_an_uninterrupted_stream_would(
    tmp_path: Path,
) -> None:
    write_with_bad_rles(tmp_path, count=5, bad_ids={2, 4}, seed=2, shard_name="sa_000000.tar")
    source = str(tmp_path)
    units = list_units(source)
    full = list(Sa1bStream(source, units, CONFIG))
    assert [type(i).__name__ for i in full] == ["DataItem", *["BadSample", "DataItem"] * 2]
    position = StreamPosition()
    assert isinstance(full[0], DataItem)
    position.advance(full[0])
    rest = list(Sa1bStream(source, units, CONFIG, position=position))
    assert len(rest) == len(full) - 1
    for a, b in zip(full[1:], rest, strict=True):
        if isinstance(a, DataItem):
            assert isinstance(b, DataItem)
            assert (a.unit, a.index) == (b.unit, b.index)
            assert torch.equal(a.sample.sample.image, b.sample.sample.image)
            assert torch.equal(a.sample.prompts.point_coords, b.sample.prompts.point_coords)
        else:
            assert a == b


def test_data_tally_counts_merges_and_round_trips() -> None:
    tally = DataTally()
    for item in (BadData("s:a.json", "bad rle"), BadData("s:a.json", "bad rle"), BadData("b", "x")):
        tally.count(item)
    other = DataTally(used=3, skipped=1, bad={"c": "y", "b": "other reason"})
    tally.merge(other)
    assert (tally.used, tally.skipped) == (3, 4)
    assert tally.bad == {"s:a.json": "bad rle", "b": "x", "c": "y"}
    assert DataTally.from_dict(tally.to_dict()) == tally
    assert DataTally.from_dict({}) == DataTally()
    with pytest.raises(ValueError, match="expected a data tally dict"):
        DataTally.from_dict({"used": "3"})
