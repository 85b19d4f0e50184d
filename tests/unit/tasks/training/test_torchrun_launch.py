"""The torchrun launch of the training step: its command line, the bounds of processes_per_node,
the one-line failure messages, and the child process's end on a signal (real child processes)."""

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from pydantic import ValidationError

from autolabel.storage.config import S3Config
from autolabel.storage.sa1b import BadSample
from autolabel.tasks.training.rank_entry import (
    decode_config,
    encode_config,
    result_from_json,
    result_to_json,
)
from autolabel.tasks.training.retrain import RetrainRequest, training_key
from autolabel.tasks.training.torchrun_launch import (
    check_processes_per_node,
    describe_exit,
    error_line,
    run_child,
    torchrun_argv,
)
from autolabel.tasks.training.train_config import TrainConfig, TrainResult

ROOT = Path(__file__).resolve().parents[4]


class Lines:
    """A `LineLogger` that keeps (level, message)."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str]] = []

    def log(self, level: int, msg: object, *args: object) -> None:
        self.records.append((level, str(msg) % args))

    def messages(self) -> list[str]:
        return [m for _, m in self.records]


def test_torchrun_argv_runs_the_rank_entry_standalone() -> None:
    assert torchrun_argv(4, Path("/w/torchrun/spec.json"), python="/venv/bin/python") == [
        "/venv/bin/python", "-m", "torch.distributed.run", "--standalone",
        "--nproc-per-node", "4", "--max-restarts", "0", "--shutdown-timeout", "60",
        "-m", "autolabel.tasks.training.rank_entry", "/w/torchrun/spec.json",
    ]  # fmt: skip


@pytest.mark.parametrize("processes", [0, -1, 65])
def test_processes_per_node_out_of_range_is_refused_in_one_line(processes: int) -> None:
    expected = f"expected processes_per_node from 1 to 64, got {processes}"
    with pytest.raises(ValidationError) as raised:
        RetrainRequest(data="d", holdout="h", processes_per_node=processes)
    (error,) = raised.value.errors()
    assert error["loc"] == ("processes_per_node",)
    assert error["msg"] == f"Value error, {expected}"
    with pytest.raises(ValueError, match=f"^{expected}$"):
        torchrun_argv(processes, Path("spec.json"))
    with pytest.raises(ValueError, match=f"^{expected}$"):
        check_processes_per_node(processes, "cpu", 0)


def test_processes_per_node_defaults_to_one_and_accepts_the_bounds() -> None:
    assert RetrainRequest(data="d", holdout="h").processes_per_node == 1
    assert RetrainRequest(data="d", holdout="h", processes_per_node=64).processes_per_node == 64


def test_the_world_size_is_part_of_the_training_key_from_two_processes_on() -> None:
    """One process keeps the key trainings had before the field existed (their checkpoints stay
    resumable); two processes train another model (another world size), so get another key."""
    request = RetrainRequest(
        data="s3://b/sa1b", holdout="s3://b/h", model="efficientvit-sam-test", max_steps=12
    )
    start, objects = ("efficientvit-sam-test", "ab" * 32), [("sa_1.tar", 10, "e1")]
    assert training_key(request, start, objects) == "efficientvit-sam-test-8148bb13b82538696fd4"
    two = request.model_copy(update={"processes_per_node": 2})
    assert training_key(two, start, objects) == "efficientvit-sam-test-055ac4d3fa93bc426b88"


def test_each_rank_gets_cpu_or_one_gpu() -> None:
    assert check_processes_per_node(8, "cpu", 0) == "cpu"
    assert check_processes_per_node(8, "cpu", 2) == "cpu"  # gloo: any number of CPU ranks
    assert check_processes_per_node(2, "cuda", 2) == "cuda"
    assert check_processes_per_node(2, "cuda:1", 2) == "cuda"  # rank r on cuda:r
    expected = (
        "expected processes_per_node of at most 2 (the CUDA devices on this node, one per "
        "process), got 3"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
        check_processes_per_node(3, "cuda", 2)


def test_exit_codes_are_named() -> None:
    assert describe_exit(1) == "code 1"
    assert describe_exit(-9) == "signal SIGKILL (code -9)"
    assert describe_exit(-15) == "signal SIGTERM (code -15)"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (  # the first rank's failure is the root cause, not its peer's or torchrun's summary
            [
                "rank 1 INFO x: starting",
                "training failed: rank 1: FormatError: expected SA-1B tar shards in s3://b/t",
                "[rank0]: RuntimeError: Connection closed by peer",
                "training failed: rank 0: RuntimeError: Connection closed by peer",
                "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
            ],
            "rank 1: FormatError: expected SA-1B tar shards in s3://b/t",
        ),
        (
            ["Traceback (most recent call last):", '  File "x.py"', "ValueError: bad value", ""],
            "ValueError: bad value",
        ),
        (
            [
                "ModuleNotFoundError: No module named 'autolabel'",
                "E1206 14:57:54.387000 10663 api.py:1002] failed (exitcode: 1) local_rank: 0",
                "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
                "============================================================",
            ],
            "E1206 14:57:54.387000 10663 api.py:1002] failed (exitcode: 1) local_rank: 0",
        ),
        (
            ["rank 0 INFO x: step", "rank 0 ERROR autolabel.x: cannot upload", "rank 0 INFO y"],
            "rank 0 ERROR autolabel.x: cannot upload",
        ),
        (
            ["rank 0 INFO x: step 3", "  "],
            "no error line in its output (last line: rank 0 INFO x: step 3)",
        ),
        ([], "no output"),
    ],
)  # fmt: skip
def test_error_line_of_a_failed_child(lines: list[str], expected: str) -> None:
    assert error_line(lines) == expected


def test_config_and_result_travel_as_json(tmp_path: Path) -> None:
    config = TrainConfig(
        data="s3://bucket/sa1b",
        model_name="efficientvit-sam-test",
        output=tmp_path / "run",
        max_steps=7,
        checkpoint=tmp_path / "start.pt",
        lr=1e-3,
        device="cuda",
        s3=S3Config(endpoint_url="http://127.0.0.1:9000", path_style=True),
    )
    assert decode_config(encode_config(config)) == config
    result = TrainResult(
        step=7, start_step=4, losses=[0.5, 0.25], weights=tmp_path / "run" / "model.pt",
        sha256="ab" * 32, samples_used=14, samples_skipped=1,
        bad_data=[BadSample(name="sa_1.tar:sa_2.json", reason="rle size")], world_size=2,
    )  # fmt: skip
    assert result_from_json(result_to_json(result)) == result


def python_child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_child_lines_are_forwarded_with_their_level_and_its_exit_code_returned() -> None:
    lines = Lines()
    code, tail = run_child(
        python_child(
            "import sys\n"
            "print('hello', flush=True)\n"
            "sys.stderr.write('rank 0 WARNING autolabel.x: careful\\n')\n"
            "sys.stderr.write('training failed: rank 0: ValueError: bad\\n')\n"
            "raise SystemExit(3)\n"
        ),
        lines,
    )
    assert code == 3
    assert tail == [
        "hello",
        "rank 0 WARNING autolabel.x: careful",
        "training failed: rank 0: ValueError: bad",
    ]
    assert [level for level, _ in lines.records] == [logging.INFO, logging.WARNING, logging.ERROR]
    assert error_line(tail) == "rank 0: ValueError: bad"


class StoppedError(Exception):
    """Raised by the test's own SIGTERM handler."""


@pytest.fixture
def own_sigterm_handler() -> Iterator[list[int]]:
    """A SIGTERM handler of the test's (records, then raises `StoppedError`), restored after."""
    calls: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)
        raise StoppedError

    before = signal.signal(signal.SIGTERM, handler)
    yield calls
    signal.signal(signal.SIGTERM, before)


def signal_when_ready(lines: Lines) -> None:
    """SIGTERM this process once the child has said `ready`."""

    def watch() -> None:
        deadline = time.monotonic() + 20
        while "ready" not in lines.messages() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


CHILD_STOPPING_ON_SIGTERM = (
    "import signal, sys, time\n"
    "def stop(*_):\n"
    "    print('child got SIGTERM', flush=True)\n"
    "    raise SystemExit(143)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def test_sigterm_stops_the_child_then_runs_the_previous_handler(
    own_sigterm_handler: list[int],
) -> None:
    lines = Lines()
    signal_when_ready(lines)
    started = time.monotonic()
    with pytest.raises(StoppedError):
        run_child(python_child(CHILD_STOPPING_ON_SIGTERM), lines)
    assert time.monotonic() - started < 20
    assert own_sigterm_handler == [signal.SIGTERM]
    assert "child got SIGTERM" in lines.messages()  # it ended before the handler ran


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period() -> None:
    calls: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _frame: calls.append(signum))
    try:
        lines = Lines()
        signal_when_ready(lines)
        code, _ = run_child(
            python_child(
                "import signal, time\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "print('ready', flush=True)\n"
                "time.sleep(60)\n"
            ),
            lines,
            grace_s=0.5,
        )
    finally:
        signal.signal(signal.SIGTERM, before)
    assert code == -signal.SIGKILL
    assert calls == [signal.SIGTERM]


def test_a_process_terminated_by_default_leaves_no_child_behind(tmp_path: Path) -> None:
    """SIGTERM with its default action: the child is stopped first, then the caller dies of it."""
    pid_file = tmp_path / "child.pid"
    script = (
        "import logging, sys\n"
        "from autolabel.tasks.training.torchrun_launch import run_child\n"
        'child = \'import os, sys, time; open(sys.argv[1], "w").write(str(os.getpid())); '
        "time.sleep(60)'\n"
        "run_child([sys.executable, '-c', child, sys.argv[1]], logging.getLogger())\n"
    )
    caller = subprocess.Popen([sys.executable, "-c", script, str(pid_file)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()):
        assert caller.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pid_file.read_text())
    caller.send_signal(signal.SIGTERM)
    assert caller.wait(timeout=30) == -signal.SIGTERM
    with pytest.raises(ProcessLookupError):  # ended and reaped by the caller before it died
        os.kill(child, 0)
