"""Choosing and building the runtime each model of a labeling job runs in.

For each model the job names a `RuntimeRequest` (`autolabel.models.runtime.choice`). On a worker:

1. `candidates` lists the runtimes to try on its device (the installed ones only).
2. Each candidate is built: exported graphs and compiled engines come from the worker's
   `ArtifactCache` (`<weights>/runtime-cache/`, keyed by the weights' identity, exporter and
   runtime versions, device model, precision and shape), so a second job builds nothing.
3. Each candidate but the reference (torch fp32) must pass its parity gate on fixed inputs:
   `sam_parity` for the segmenter, `detector_parity` for the detector. On the CPU `auto`
   measures the candidates that pass and takes the fastest; on CUDA the first that passes. A
   named runtime that fails its gate is refused, so every runtime a job uses reproduces torch
   fp32 within the gate's tolerance, and the choice is not part of the work key.
4. The choice, with its reason, is logged and returned as a `RuntimeChoice` that the shard
   records on the label run. Choices are cached per key too, so the gate and the measurement
   run once per machine and weights.
"""

import functools
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import torch

from autolabel.models.errors import InvalidInputError
from autolabel.models.runtime.choice import (
    REFERENCE,
    Candidate,
    DeviceTraits,
    RuntimeRequest,
    candidates,
)
from autolabel.storage.artifact_cache import ArtifactCache

logger = logging.getLogger(__name__)

T = TypeVar("T")
_RUNTIME_PACKAGES = ("torch", "transformers", "onnx", "onnxruntime", "openvino", "tensorrt")


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeChoice:
    """The runtime a worker chose for one model, and why (recorded on the label run).

    Attributes:
        model: "segmenter" or "detector".
        runtime: e.g. "openvino-bf16".
        request: What the job asked, e.g. "auto/auto".
        device: Device and its model, e.g. "cpu (AMD EPYC 9R14)".
        reason: One line: the measurements or the gate verdicts that decided.
    """

    model: str
    runtime: str
    request: str
    device: str
    reason: str

    def record(self) -> dict[str, str]:
        """A JSON-ready dict."""
        return asdict(self)


def installed_versions() -> dict[str, str]:
    """Versions of the exporter and runtime packages that are installed."""
    versions = {}
    for package in _RUNTIME_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first CPU's `/proc/cpuinfo` fields (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields


def device_model(device: str) -> str:
    """The device's model name (CPU brand string or GPU name), for cache keys and records."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def device_traits(device: str) -> DeviceTraits:
    """Device type, bf16 support and installed runtimes of `device` on this worker."""
    installed = {
        name for name in ("onnxruntime", "openvino", "tensorrt") if name in installed_versions()
    }
    if device.startswith("cuda"):
        return DeviceTraits("cuda", torch.cuda.is_bf16_supported(), frozenset(installed))
    flags = set(_cpuinfo().get("flags", "").split())
    bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    return DeviceTraits("cpu", bf16, frozenset(installed - {"tensorrt"}))


def median_seconds(call: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of `call` after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True, slots=True, kw_only=True)
class Trial:
    """How to try one model's candidates (the model-specific half of `choose`).

    Attributes:
        model: "segmenter" or "detector".
        identity: The weights' identity (`<name>@<sha256 prefix>` or `<name>@random`).
        build: Builds a candidate's runtime.
        gate: (reference, candidate runtime, candidate) -> (passed, one-line verdict).
        timed: A runtime -> a call to time (one representative batch).
    """

    model: str
    identity: str
    build: Callable[[Candidate], Any]
    gate: Callable[[Any, Any, Candidate], tuple[bool, str]]
    timed: Callable[[Any], Callable[[], object]]


def choose(
    trial: Trial,
    request: RuntimeRequest,
    *,
    device: str,
    cache: ArtifactCache,
    unsupported: frozenset[str] = frozenset(),
) -> tuple[Any, RuntimeChoice]:
    """The runtime of `trial.model` for `request` on `device`, and the recorded choice.

    Args:
        unsupported: Backends this model has no runtime for (e.g. TensorRT for the detector).

    Raises:
        InvalidInputError: the request names a runtime that is not available here, or one that
            fails its parity gate (one line with the gate's verdict).
    """
    traits = device_traits(device)
    found = [c for c in candidates(request, traits) if c.backend not in unsupported]
    if not found:
        raise InvalidInputError(
            f"expected a {trial.model} runtime for {request}, found none "
            f"({', '.join(sorted(unsupported))} not available for the {trial.model})"
        )
    described = f"{device} ({device_model(device)})"
    key = {
        "model": trial.model,
        "weights": trial.identity,
        "request": str(request),
        "candidates": [c.name for c in found],
        "device": described,
        "versions": installed_versions(),
    }

    def decide(path: Path) -> None:
        path.write_text(json.dumps(_decide(trial, found, traits.device_type)), encoding="utf-8")

    label = f"choice-{trial.model}-{trial.identity.replace('@', '-')}"
    decided = json.loads(cache.get(label, key, "choice.json", decide).read_text(encoding="utf-8"))
    if decided["runtime"] is None:
        raise InvalidInputError(
            f"expected {trial.model} runtime {request} to pass its parity gate: {decided['reason']}"
        )
    chosen = next(c for c in found if c.name == decided["runtime"])
    runtime = trial.build(chosen)
    choice = RuntimeChoice(
        model=trial.model,
        runtime=chosen.name,
        request=str(request),
        device=described,
        reason=decided["reason"],
    )
    logger.info("%s runs in %s: %s", trial.model, chosen.name, choice.reason)
    return runtime, choice


def _decide(trial: Trial, found: list[Candidate], device_type: str) -> dict[str, Any]:
    """Gate (and on the CPU, time) the candidates: {"runtime": name or None, "reason": ...}."""
    if found == [REFERENCE]:
        return {"runtime": REFERENCE.name, "reason": "torch fp32 is the reference"}
    reference = trial.build(REFERENCE)
    verdicts, timings = [], {}
    for candidate in found:
        runtime = reference if candidate == REFERENCE else trial.build(candidate)
        if candidate != REFERENCE:
            passed, verdict = trial.gate(reference, runtime, candidate)
            verdicts.append(verdict)
            if not passed:
                continue
        if device_type == "cuda" or len(found) == 1:
            timings[candidate.name] = 0.0
            break
        timings[candidate.name] = median_seconds(trial.timed(runtime))
    if not timings:
        return {"runtime": None, "reason": "; ".join(verdicts)}
    best = min(timings, key=timings.__getitem__)
    measured = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in timings.items() if seconds)
    how = f"fastest passing: {measured}" if measured else "first passing"
    return {"runtime": best, "reason": "; ".join([how, *verdicts])}
