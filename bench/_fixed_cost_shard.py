"""Flow `autolabel-shard` with fixed-cost models, and its deployment, for `scale_out.py`.

The production shard flow (`autolabel.flows.label_shard.label_shard_run`) runs unchanged
(attempt record, heartbeat, device slot, model load, `run_shard`, result) except for the device
work: the box source that `label_attempt` builds and the segmenter call of `run_shard` are
replaced by `pipeline_throughput`'s stand-ins, which sleep for the device time of each batch and
return real boxes and masks. So a 2-core machine can run several shard runs at once, as GPU
hosts would, and what the benchmark measures is the fan-out, the process start-ups and the IO.

Per-image device time: SCALE_OUT_DEVICE_MS (milliseconds, default 100), `DETECTOR_SHARE` of it
in the detector and the rest in the segmenter. The variable does not start with AUTOLABEL_:
those names are the settings' (unknown ones are refused). `register_deployment` deploys the flow
on a process work pool as DEPLOYMENT.
"""

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for pipeline_throughput

import pipeline_throughput
from prefect import flow

from autolabel.flows.label_shard import label_shard_run
from autolabel.tasks.labeling import shard as shard_module
from autolabel.tasks.labeling import shard_runs
from autolabel.tasks.labeling.job import LabelJob, RunContext, ShardRef, ShardResult
from autolabel.tasks.labeling.shard import BoxSource
from autolabel.tasks.resources import Resources

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENT = "autolabel-shard/scale-out"
DEVICE_MS_ENV = "SCALE_OUT_DEVICE_MS"
DEFAULT_DEVICE_MS = 100.0
DETECTOR_SHARE = 0.75
"""Part of the per-image device time spent in the detector (the segmenter takes the rest)."""


def device_seconds() -> tuple[float, float]:
    """(detector, segmenter) seconds per image, from SCALE_OUT_DEVICE_MS."""
    total = float(os.environ.get(DEVICE_MS_ENV, DEFAULT_DEVICE_MS)) / 1000
    return total * DETECTOR_SHARE, total * (1 - DETECTOR_SHARE)


def install_fixed_cost_models() -> None:
    """Replace the device work of this process's shards by the fixed-cost stand-ins.

    Patch points, the narrowest that leave the rest of the shard in production code:
    `shard_runs.box_source_for` (`label_attempt` takes its box source from it; the real
    detector is still loaded by `chosen_runtimes`, as the start-up does) and
    `shard.segment_boxes_batch` (`ShardLabeler._segment` calls it with the loaded segmenter).
    """
    detector_s, segmenter_s = device_seconds()

    def fixed_cost_boxes(job: LabelJob, resources: Resources) -> BoxSource:
        del job, resources
        return pipeline_throughput.FixedCostDetector(detector_s)

    # Imported names of those modules, replaced for this process (mypy: not re-exported).
    shard_runs.box_source_for = fixed_cost_boxes  # type: ignore[attr-defined]
    segment = pipeline_throughput.fixed_cost_segmenter(segmenter_s)
    shard_module.segment_boxes_batch = segment  # type: ignore[attr-defined]


@flow(name="autolabel-shard", validate_parameters=True, retries=0)
def fixed_cost_shard_run(
    shard: ShardRef, job: LabelJob, ctx: RunContext, attempt: int = 1
) -> ShardResult:
    """`label_shard_run` with the fixed-cost stand-ins in place of the models' device work."""
    install_fixed_cost_models()
    return label_shard_run.fn(shard, job, ctx, attempt)


def register_deployment(env: dict[str, str], pool: str, folder: Path, *, prefect: Path) -> None:
    """Create process work pool `pool` and deploy `fixed_cost_shard_run` on it as DEPLOYMENT,
    from a prefect.yaml written to `folder` (its pull step enters this checkout)."""
    folder.mkdir()
    (folder / "prefect.yaml").write_text(
        f"name: autolabel-scale-out\nprefect-version: 3.9.1\nbuild: null\npush: null\n"
        f"pull:\n  - prefect.deployments.steps.set_working_directory:\n"
        f'      directory: "{ROOT}"\n'
        f"deployments:\n  - name: {DEPLOYMENT.split('/')[1]}\n"
        f"    entrypoint: bench/_fixed_cost_shard.py:fixed_cost_shard_run\n"
        f"    work_pool:\n      name: {pool}\n"
    )
    for args in (
        ["work-pool", "create", pool, "--type", "process"],
        [
            "deploy",
            "--prefect-file",
            str(folder / "prefect.yaml"),
            "--name",
            DEPLOYMENT.split("/")[1],
        ],
    ):
        done = subprocess.run(  # noqa: S603 - our own venv's prefect, fixed arguments
            [str(prefect), "--no-prompt", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"prefect {args[0]} failed:\n{done.stdout[-3000:]}{done.stderr}")
