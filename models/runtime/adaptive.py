"""Memory-adaptive batching: an out-of-memory error retries that batch at half the size.

Deterministic errors are never retried; only the allocator's out-of-memory error is, and only by
splitting the work, never at the same size.
"""

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from autolabel.models.errors import ModelError

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class BatchTooLargeError(ModelError, MemoryError):
    """A batch of one item still runs out of memory."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU allocator out-of-memory errors raised by torch."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_cached_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class AdaptiveBatcher:
    """Runs `fn` over items in batches, halving the batch size after an out-of-memory error.

    The size that last worked is kept for later calls, so one large image does not make every
    later batch retry from the top.

    Args:
        max_batch_size: Largest batch ever tried (>= 1).
    """

    def __init__(self, max_batch_size: int) -> None:
        if max_batch_size < 1:
            raise ValueError(f"expected max_batch_size >= 1, got {max_batch_size}")
        self.max_batch_size = max_batch_size
        self.batch_size = max_batch_size
        self.halvings = 0

    def run(self, items: Sequence[T], fn: Callable[[Sequence[T]], list[R]]) -> list[R]:
        """Apply `fn` to consecutive batches of `items`; returns the results in item order.

        `fn` must return one result per item of the batch it was given.
        """
        results: list[R] = []
        start = 0
        while start < len(items):
            batch = items[start : start + self.batch_size]
            try:
                out = fn(batch)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                self._shrink(len(batch), exc)
                continue
            if len(out) != len(batch):
                raise ModelError(f"expected {len(batch)} results from a batch, got {len(out)}")
            results.extend(out)
            start += len(batch)
        return results

    def _shrink(self, failed_size: int, exc: BaseException) -> None:
        _free_cached_memory()
        if failed_size <= 1:
            raise BatchTooLargeError(
                "expected a batch of one item to fit in memory, got out-of-memory"
            ) from exc
        self.batch_size = max(1, failed_size // 2)
        self.halvings += 1
        logger.warning(
            "out of memory at batch size %d; retrying at %d", failed_size, self.batch_size
        )
