"""Adaptive batching: halves on out-of-memory, never retries other errors."""

from collections.abc import Sequence

import pytest
import torch

from autolabel.models.runtime.adaptive import AdaptiveBatcher, BatchTooLargeError


class FakeDevice:
    """Raises torch's out-of-memory error for batches larger than `capacity`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.calls: list[int] = []

    def __call__(self, batch: Sequence[int]) -> list[int]:
        self.calls.append(len(batch))
        if len(batch) > self.capacity:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in batch]


def test_halves_until_it_fits_and_keeps_order() -> None:
    device = FakeDevice(capacity=3)
    batcher = AdaptiveBatcher(16)
    assert batcher.run(list(range(10)), device) == [x * 10 for x in range(10)]
    assert device.calls[:3] == [10, 5, 2]
    assert batcher.batch_size == 2
    assert batcher.halvings == 2
    # The learned size carries over to the next call.
    device.calls.clear()
    batcher.run([1, 2, 3, 4], device)
    assert device.calls == [2, 2]


def test_runtime_error_with_out_of_memory_text_counts() -> None:
    def fn(batch: Sequence[int]) -> list[int]:
        if len(batch) > 1:
            raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried... out of memory")
        return list(batch)

    assert AdaptiveBatcher(4).run([1, 2, 3], fn) == [1, 2, 3]


def test_single_item_out_of_memory_raises() -> None:
    with pytest.raises(BatchTooLargeError, match="batch of one"):
        AdaptiveBatcher(4).run([1, 2], FakeDevice(capacity=0))


def test_other_errors_are_not_retried() -> None:
    calls = []

    def fn(batch: Sequence[int]) -> list[int]:
        calls.append(len(batch))
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        AdaptiveBatcher(8).run([1, 2, 3], fn)
    assert calls == [3]


def test_wrong_result_count_is_an_error() -> None:
    with pytest.raises(Exception, match="expected 2 results"):
        AdaptiveBatcher(2).run([1, 2], lambda b: [1])
