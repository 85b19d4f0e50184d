"""The shard pipeline: order, overlap of IO with compute, bounded look-ahead, error propagation."""

import threading
import time

import pytest

from autolabel.tasks.labeling.pipeline import run_pipeline


def test_every_item_reaches_the_writer_in_order() -> None:
    written: list[list[int]] = []
    times = run_pipeline(
        list(range(10)),
        fetch=lambda i: i * 2,
        infer=lambda batch: [x + 1 for x in batch],
        write=written.append,
        batch_size=4,
        io_threads=3,
    )
    assert written == [[1, 3, 5, 7], [9, 11, 13, 15], [17, 19]]
    assert times.wall > 0


def test_io_and_writes_overlap_with_inference() -> None:
    """Sequential cost would be 8 x (fetch 0.05 / 2 threads) + 4 x infer 0.1 + 4 x write 0.1."""

    def fetch(i: int) -> int:
        time.sleep(0.05)
        return i

    def infer(batch: list[int]) -> list[int]:
        time.sleep(0.1)
        return batch

    def write(batch: list[int]) -> None:
        time.sleep(0.1)

    times = run_pipeline(
        list(range(8)), fetch=fetch, infer=infer, write=write, batch_size=2, io_threads=2
    )
    sequential = 8 * 0.05 / 2 + 4 * 0.1 + 4 * 0.1
    assert times.wall < 0.8 * sequential
    assert times.infer == pytest.approx(0.4, abs=0.1)


def test_look_ahead_is_bounded() -> None:
    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def fetch(i: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        return i

    def infer(batch: list[int]) -> list[int]:
        nonlocal in_flight
        time.sleep(0.01)
        with lock:
            in_flight -= len(batch)
        return batch

    run_pipeline(
        list(range(50)),
        fetch=fetch,
        infer=infer,
        write=lambda b: None,
        batch_size=2,
        io_threads=4,
        prefetch=3,
    )
    # prefetch items waiting plus the batch being assembled
    assert peak <= 3 + 2


def test_writer_error_stops_the_pipeline() -> None:
    inferred: list[int] = []

    def infer(batch: list[int]) -> list[int]:
        time.sleep(0.02)
        inferred.extend(batch)
        return batch

    def write(batch: list[int]) -> None:
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="database went away"):
        run_pipeline(
            list(range(40)),
            fetch=lambda i: i,
            infer=infer,
            write=write,
            batch_size=2,
            io_threads=1,
        )
    assert len(inferred) < 40


def test_fetch_error_is_raised() -> None:
    def fetch(i: int) -> int:
        if i == 3:
            raise OSError("connection reset")
        return i

    with pytest.raises(OSError, match="connection reset"):
        run_pipeline(
            list(range(6)),
            fetch=fetch,
            infer=lambda b: b,
            write=lambda b: None,
            batch_size=2,
            io_threads=2,
        )
