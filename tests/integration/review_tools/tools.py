"""Where the review tools live, whether they are installed, and running their code.

`deploy/review-tools/install.sh` installs them in virtual environments of their own (they cannot
share the project's, nor one venv): FiftyOne and datumaro in `.venv-review/formats`, Label Studio
in `.venv-review/label-studio`. The tests run the tools' code in those venvs, from the probe
scripts of this folder, in subprocesses that write JSON. A test whose tool is not installed (or
installed from another lock than the current one) is skipped with a line naming the install
command; with AUTOLABEL_REQUIRE_REVIEW_TOOLS=1, as `.ci/run` sets it, it fails instead.
"""

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
INSTALL_COMMAND = "deploy/review-tools/install.sh"
#: Set to 1 (CI) to fail, not skip, the tests whose tool is missing.
REQUIRED_ENV = "AUTOLABEL_REQUIRE_REVIEW_TOOLS"


@dataclass(frozen=True, slots=True)
class ToolVenv:
    """One of install.sh's venvs: `name` is also its lock file's stem."""

    name: str
    tools: str

    @property
    def path(self) -> Path:
        return REPO / ".venv-review" / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def missing(self) -> str | None:
        """Why the venv cannot be used, or None when it holds exactly the current lock."""
        stamp = self.path / ".lock-sha256"
        if not stamp.is_file():
            return f"{self.tools} not installed"
        lock = REPO / "deploy" / "review-tools" / f"{self.name}.lock"
        if stamp.read_text().strip() != hashlib.sha256(lock.read_bytes()).hexdigest():
            return f"{self.tools} installed from an older {lock.name}"
        return None

    def require(self) -> None:
        """Skip the test when the venv is unusable (fail it under REQUIRED_ENV=1)."""
        reason = self.missing()
        if reason is None:
            return
        message = f"{reason} (.venv-review/{self.name}): run {INSTALL_COMMAND}"
        if os.environ.get(REQUIRED_ENV) == "1":
            pytest.fail(f"{message} ({REQUIRED_ENV}=1)", pytrace=False)
        pytest.skip(message)


FORMATS = ToolVenv("formats", "FiftyOne and datumaro")
LABEL_STUDIO = ToolVenv("label-studio", "Label Studio")


def stop_group(pgid: int, *, grace_s: float = 10.0) -> None:
    """SIGTERM the process group `pgid`, then SIGKILL whatever is left after `grace_s`."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def run_probe(
    venv: ToolVenv,
    script: str,
    *args: str | Path,
    work: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 240.0,
) -> Any:
    """Run this folder's `script` with `venv`'s Python; returns the JSON it wrote.

    The probe writes its result to `<work>/<script>.json` (named by PROBE_OUT) and its log to
    `<work>/<script>.log`. It runs in a process group of its own, which is ended afterwards:
    nothing it started (FiftyOne's mongod) outlives it.
    """
    out, log = work / f"{script}.json", work / f"{script}.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(venv.python), str(HERE / script), *map(str, args)],
            cwd=work,
            env={**os.environ, **(env or {}), "PROBE_OUT": str(out)},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            stop_group(proc.pid)
            proc.wait()
    if code != 0:
        tail = log.read_text(errors="replace")[-3000:]
        what = f"ran past {timeout_s:.0f} s" if code is None else f"exited {code}"
        pytest.fail(f"{script} {what}:\n{tail}", pytrace=False)
    return json.loads(out.read_text(encoding="utf-8"))
