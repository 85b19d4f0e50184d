"""A three-stage pipeline that keeps the device busy while IO happens.

    fetch+decode (thread pool, bounded look-ahead) -> infer (caller's thread, in batches)
    -> write (one writer thread, bounded queue)

Fetching the next batch and writing the previous one overlap with inference on the current one.
Memory stays bounded: at most `prefetch` decoded items wait for the device and at most
`write_queue` finished batches wait for the database. An error in any stage stops the pipeline and
is raised to the caller; batches already written stay written (each write is its own transaction).
"""

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

In = TypeVar("In")
Item = TypeVar("Item")
Out = TypeVar("Out")

_STOP = object()


@dataclass
class StageTimes:
    """Seconds spent in each stage (fetch is summed over threads; it overlaps the others)."""

    fetch: float = 0.0
    infer: float = 0.0
    write: float = 0.0
    wait_for_input: float = 0.0
    wall: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_fetch(self, seconds: float) -> None:
        with self._lock:
            self.fetch += seconds

    def as_dict(self) -> dict[str, float]:
        return {
            "fetch": round(self.fetch, 4),
            "infer": round(self.infer, 4),
            "write": round(self.write, 4),
            "wait_for_input": round(self.wait_for_input, 4),
            "wall": round(self.wall, 4),
        }


class _Writer(Generic[Out]):
    """One background thread applying `write` to batches in order."""

    def __init__(self, write: Callable[[list[Out]], None], maxsize: int, times: StageTimes):
        self._write = write
        self._times = times
        self._queue: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pipeline-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (batch := self._queue.get()) is not _STOP:
            if self._error is not None:
                continue  # drain without writing after a failure
            start = time.perf_counter()
            try:
                self._write(batch)  # type: ignore[arg-type]
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = exc
            self._times.write += time.perf_counter() - start

    def put(self, batch: list[Out]) -> None:
        self.raise_if_failed()
        self._queue.put(batch)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error


def _prefetched(
    items: Iterable[In],
    fetch: Callable[[In], Item],
    pool: ThreadPoolExecutor,
    depth: int,
    times: StageTimes,
) -> Iterator[Item]:
    """Yield `fetch(item)` in input order, keeping at most `depth` fetches in flight."""

    def timed(item: In) -> Item:
        start = time.perf_counter()
        try:
            return fetch(item)
        finally:
            times.add_fetch(time.perf_counter() - start)

    pending: deque[Future[Item]] = deque()
    source = iter(items)
    for item in source:
        pending.append(pool.submit(timed, item))
        if len(pending) >= depth:
            break
    while pending:
        future = pending.popleft()
        start = time.perf_counter()
        result = future.result()
        times.wait_for_input += time.perf_counter() - start
        next_item = next(source, _STOP)
        if next_item is not _STOP:
            pending.append(pool.submit(timed, next_item))  # type: ignore[arg-type]
        yield result


def run_pipeline(
    items: Sequence[In],
    *,
    fetch: Callable[[In], Item],
    infer: Callable[[list[Item]], list[Out]],
    write: Callable[[list[Out]], None],
    batch_size: int,
    io_threads: int,
    prefetch: int | None = None,
    write_queue: int = 2,
) -> StageTimes:
    """Fetch, infer and write `items`; returns the time spent per stage.

    Args:
        items: Work items in order (e.g. image references).
        fetch: Runs on the IO threads; must not raise for per-item problems it can describe
            (return a failure record instead), since an exception stops the pipeline.
        infer: Runs on the caller's thread with up to `batch_size` fetched items.
        write: Runs on the writer thread with each batch `infer` returned, in order.
        batch_size: Items per `infer` call.
        io_threads: Size of the fetch thread pool.
        prefetch: Fetched items allowed to wait for `infer` (default: two batches).
        write_queue: Finished batches allowed to wait for `write`.
    """
    if batch_size < 1 or io_threads < 1:
        raise ValueError(f"expected batch_size and io_threads >= 1, got {batch_size}, {io_threads}")
    times = StageTimes()
    start_wall = time.perf_counter()
    depth = prefetch if prefetch is not None else 2 * batch_size
    writer: _Writer[Out] = _Writer(write, write_queue, times)
    try:
        with ThreadPoolExecutor(io_threads, thread_name_prefix="pipeline-fetch") as pool:
            batch: list[Item] = []
            for fetched in _prefetched(items, fetch, pool, max(depth, 1), times):
                batch.append(fetched)
                if len(batch) == batch_size:
                    _infer_into(writer, infer, batch, times)
                    batch = []
            if batch:
                _infer_into(writer, infer, batch, times)
    finally:
        writer.close()
    times.wall = time.perf_counter() - start_wall
    return times


def _infer_into(
    writer: "_Writer[Out]",
    infer: Callable[[list[Item]], list[Out]],
    batch: list[Item],
    times: StageTimes,
) -> None:
    start = time.perf_counter()
    outputs = infer(batch)
    times.infer += time.perf_counter() - start
    writer.put(outputs)
