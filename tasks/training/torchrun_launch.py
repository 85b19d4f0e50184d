"""Training in several processes on this node: the trainer run as a torchrun child process.

`train_in_processes(config, processes=N, ...)` writes a `rank_entry.RankSpec` into the run
folder and runs

    python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts 0 \
        --shutdown-timeout 60 -m autolabel.tasks.training.rank_entry <output>/torchrun/spec.json

(gloo on CPU, nccl on CUDA with one GPU per rank, as the trainer picks), forwards each line it
prints to a logger, waits for it and returns rank 0's `TrainResult`.

The child never outlives the caller: SIGTERM or SIGINT to the calling process (when it waits on
the main thread) is passed on as SIGTERM to torchrun, which passes it to every rank (each
finishes its step, writes the checkpoint and exits); after `GRACE_S` torchrun is killed (the ranks
die with it), then the caller's own handler of that signal runs as before (Prefect's raises, and
the flow run crashes; the default one ends the process). If the caller dies
without a chance to do so (SIGKILL), the ranks see their standard input, a pipe from it, close,
and stop the same way. A failed child raises `TrainingProcessError` naming the exit code and its
error line.
"""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import IO, Protocol

import torch

from autolabel.tasks.training.rank_entry import (
    FAILURE_PREFIX,
    RankSpec,
    encode_config,
    result_from_json,
)
from autolabel.tasks.training.train_config import TrainConfig, TrainResult

MAX_PROCESSES_PER_NODE = 64
SHUTDOWN_TIMEOUT_S = 60  # torchrun: from SIGTERM to its ranks until it kills them
GRACE_S = SHUTDOWN_TIMEOUT_S + 30  # this process: from SIGTERM to torchrun until it kills it
RANK_ENTRY = "autolabel.tasks.training.rank_entry"
_TAIL_LINES = 200
_ERROR_LINE = re.compile(r"^\s*(?:\w+\.)*\w*(?:Error|Exception|Interrupt)\b:?")
_NOT_ROOT_CAUSE = ("ChildFailedError",)  # torchrun's summary of the ranks' failures
_GLOG_LEVEL = re.compile(r"^([IWEF])\d{4} \d")
_GLOG_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}


class TrainingProcessError(RuntimeError):
    """The training child process failed (one line: exit code and its error line)."""


class LineLogger(Protocol):
    """Where the child's lines go (a `logging.Logger` or Prefect's run logger)."""

    def log(self, level: int, msg: object, *args: object) -> None: ...


def check_processes_per_node(processes: int, device: str, cuda_devices: int) -> str:
    """The device string of every rank (`cpu`, or `cuda`: rank r on cuda:r).

    Args:
        processes: Training processes on this node, 1..`MAX_PROCESSES_PER_NODE`.
        device: The configured device (`cpu`, `cuda`, `cuda:N`; `auto` resolved before).
        cuda_devices: CUDA devices visible on this node.

    Raises:
        ValueError: out of range, or more processes than CUDA devices on a CUDA device.
    """
    if not 1 <= processes <= MAX_PROCESSES_PER_NODE:
        raise ValueError(
            f"expected processes_per_node from 1 to {MAX_PROCESSES_PER_NODE}, got {processes}"
        )
    if not device.startswith("cuda"):
        return "cpu"
    if processes > cuda_devices:
        raise ValueError(
            f"expected processes_per_node of at most {cuda_devices} (the CUDA devices on this "
            f"node, one per process), got {processes}"
        )
    return "cuda"


def torchrun_argv(processes: int, spec_path: Path, *, python: str = sys.executable) -> list[str]:
    """The torchrun command line that trains `spec_path` in `processes` processes on this node."""
    if not 1 <= processes <= MAX_PROCESSES_PER_NODE:
        raise ValueError(
            f"expected processes_per_node from 1 to {MAX_PROCESSES_PER_NODE}, got {processes}"
        )
    launcher = [python, "-m", "torch.distributed.run", "--standalone"]
    options = ["--nproc-per-node", str(processes), "--max-restarts", "0"]
    options += ["--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S)]
    return [*launcher, *options, "-m", RANK_ENTRY, str(spec_path)]


def describe_exit(code: int) -> str:
    """`code 1`, or `signal SIGKILL (code -9)` for a child ended by a signal."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"signal {name} (code {code})"
    return f"code {code}"


def error_line(lines: list[str]) -> str:
    """The line of a failed child's output that says what went wrong.

    The first rank's `training failed: ...` line (the root cause: a rank that fails first makes
    its peers fail after it), else the last line that names an exception or is logged as an
    error (torchrun's summary of the failures excepted), else says there is none.
    """
    text = [line.strip() for line in lines if line.strip()]
    for line in text:
        if line.startswith(FAILURE_PREFIX):
            return line.removeprefix(FAILURE_PREFIX)
    for line in reversed(text):
        is_error = _ERROR_LINE.match(line) or _level(line) >= logging.ERROR
        if is_error and not any(name in line for name in _NOT_ROOT_CAUSE):
            return line
    return f"no error line in its output (last line: {text[-1]})" if text else "no output"


def _level(line: str) -> int:
    """The log level of a child's line: its logging level name, or torch's glog-style prefix
    (`E1206 12:00:00.000 ...`); INFO otherwise."""
    glog = _GLOG_LEVEL.match(line)
    if glog is not None:
        return _GLOG_LEVELS[glog.group(1)]
    if line.startswith(FAILURE_PREFIX) or " ERROR " in line or " CRITICAL " in line:
        return logging.ERROR
    return logging.WARNING if " WARNING " in line else logging.INFO


def _forward(stream: IO[str], log: LineLogger, tail: deque[str]) -> None:
    for raw in stream:
        line = raw.rstrip("\n")
        tail.append(line)
        log.log(_level(line), "%s", line)


class _Stopper:
    """Stops the child: SIGTERM (torchrun passes it to every rank), SIGKILL after `grace_s`."""

    def __init__(self, proc: "subprocess.Popen[str]", grace_s: float) -> None:
        self.proc, self.grace_s = proc, grace_s
        self.since: float | None = None
        self.signals: list[int] = []

    def request(self, signum: int | None = None) -> None:
        """Ask the child to stop (safe inside a signal handler: sends a signal, never waits)."""
        if signum is not None:
            self.signals.append(signum)
        if self.since is None:
            self.since = time.monotonic()
            with suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self) -> int:
        """Wait for the child's end, killing it `grace_s` after a stop was requested."""
        while True:
            try:
                return self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if self.since is not None and time.monotonic() - self.since > self.grace_s:
                    self.proc.kill()  # the ranks die with torchrun (PR_SET_PDEATHSIG)


Handler = Callable[[int, FrameType | None], object] | int


@contextmanager
def _stopping_on_signals(stopper: _Stopper) -> Iterator[dict[int, Handler]]:
    """While inside, SIGTERM and SIGINT ask the child to stop (main thread only; an ignored
    signal stays ignored); yields the handlers they had, restored on leaving."""
    previous: dict[int, Handler] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            prior = signal.getsignal(signum)
            if prior is not None and prior != signal.SIG_IGN:
                previous[signum] = prior
                signal.signal(signum, lambda s, _frame: stopper.request(s))
    try:
        yield previous
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _deliver(signum: int, handler: Handler) -> None:
    """Run what `signum` did before the child was started (its handler, or the default)."""
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)


def run_child(
    argv: list[str],
    log: LineLogger,
    *,
    env: dict[str, str] | None = None,
    grace_s: float = GRACE_S,
) -> tuple[int, list[str]]:
    """Run `argv` to its end, forwarding each output line (stdout and stderr) to `log`.

    The child gets its own session and a standard input pipe that closes when this process
    ends. SIGTERM or SIGINT meanwhile stop the child (SIGTERM, SIGKILL after `grace_s`), then
    take their previous effect. Returns the exit code and the last output lines.
    """
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=env,
        start_new_session=True,
    )
    if proc.stdout is None:
        raise RuntimeError("expected a pipe from the child's output, got none")
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    reader = threading.Thread(target=_forward, args=(proc.stdout, log, tail), daemon=True)
    reader.start()
    stopper = _Stopper(proc, grace_s)
    try:
        with _stopping_on_signals(stopper) as previous:
            code = stopper.wait()
    finally:
        if proc.poll() is None:  # an exception while waiting
            stopper.request()
            stopper.wait()
        if proc.stdin is not None:
            proc.stdin.close()  # any process left that reads it (a rank) now stops
        reader.join(timeout=10)
    for signum in stopper.signals[:1]:
        _deliver(signum, previous[signum])
    return code, list(tail)


def train_in_processes(
    config: TrainConfig, log: LineLogger, *, processes: int, sync_url: str | None
) -> TrainResult:
    """Run `config` in `processes` torchrun processes on this node (see the module docstring).

    Args:
        config: The run; its `output` must be a local folder every process can read (the
            checkpoint found there is resumed by every rank). A `cuda` device (`cuda:N`
            included) gives rank r cuda:r; any other trains on CPU.
        log: Receives every line the processes print.
        processes: Training processes (ranks), 1..`MAX_PROCESSES_PER_NODE`.
        sync_url: Store folder that rank 0 uploads the metrics and each checkpoint to.

    Raises:
        ValueError: `processes` out of range, or more than the CUDA devices.
        TrainingProcessError: the child failed or was stopped.
    """
    cuda_devices = torch.cuda.device_count() if config.device.startswith("cuda") else 0
    device = check_processes_per_node(processes, config.device, cuda_devices)
    folder = config.output / "torchrun"
    folder.mkdir(parents=True, exist_ok=True)
    result_path = folder / "result.json"
    result_path.unlink(missing_ok=True)
    spec = RankSpec(
        config=encode_config(replace(config, device=device)),
        sync_url=sync_url,
        result_path=str(result_path),
    )
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec.model_dump(mode="json")))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code, tail = run_child(torchrun_argv(processes, spec_path), log, env=env)
    if code != 0:
        raise TrainingProcessError(
            f"training in {processes} processes (torchrun) exited with {describe_exit(code)}: "
            f"{error_line(tail)}"
        )
    if not result_path.is_file():
        raise TrainingProcessError(
            f"training in {processes} processes (torchrun) exited with code 0 but wrote no "
            f"result to {result_path}"
        )
    return result_from_json(result_path.read_text())
