"""A retraining killed mid-training resumes from its checkpoint in the object store.

The flow runs in a subprocess (against the session's Prefect test API) and is SIGKILLed once the
store holds a checkpoint; the rerun must pick that checkpoint up, finish the remaining steps only,
and end with the same weights as an uninterrupted training; a third run reuses the finished
training instead of repeating it. `margin=1.0` keeps the candidates from being promoted, so every
run starts from random initialisation and so has the same training key.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autolabel.flows.retrain import RetrainRequest, retrain_sam
from autolabel.storage.config import S3Config
from autolabel.tasks.training.train_config import TrainConfig
from autolabel.tasks.training.trainer import run_training
from tests.integration.flows.conftest import ROOT, FlowEnv
from tests.integration.flows.test_retrain_flow import versions
from tests.synthetic import write_synthetic_shards

pytestmark = pytest.mark.integration

STEPS, EVERY, KILL_AT = 24, 4, 8
RUN_FLOW = (
    "import sys\n"
    "from autolabel.flows.retrain import RetrainRequest, retrain_sam\n"
    "retrain_sam(RetrainRequest.model_validate_json(sys.argv[1]))\n"
)


def stored_step(training_root: Path) -> int:
    """Step of the checkpoint in the store (written atomically), 0 when there is none."""
    found = sorted(training_root.glob("*/checkpoints/last.pt"))
    if not found:
        return 0
    return int(torch.load(found[0], map_location="cpu", weights_only=True)["step"])


def logged_steps(training_dir: Path) -> list[int]:
    lines = (training_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


def make_request(env: FlowEnv, tmp_path: Path) -> RetrainRequest:
    shapes = {"height": 64, "width": 80, "max_shapes": 1, "radius": (0.3, 0.45)}
    write_synthetic_shards(tmp_path / "train", shards=2, images_per_shard=4, seed=0, **shapes)  # type: ignore[arg-type]
    write_synthetic_shards(tmp_path / "holdout", shards=1, images_per_shard=2, seed=99, **shapes)  # type: ignore[arg-type]
    env.upload_folder(tmp_path / "train", "sa1b/train/")
    env.upload_folder(tmp_path / "holdout", "sa1b/holdout/")
    return RetrainRequest(
        data=f"s3://{env.bucket}/sa1b/train",
        holdout=f"s3://{env.bucket}/sa1b/holdout",
        model="efficientvit-sam-test",
        models_url=f"s3://{env.bucket}/models",
        max_steps=STEPS,
        checkpoint_every=EVERY,
        images_per_batch=1,
        max_masks=1,
        lr=1e-3,
        margin=1.0,  # never promoted: every run starts from random init, so has one key
        max_eval_images=2,
        from_scratch=True,
    )


def kill_after_checkpoint(request: RetrainRequest, training_root: Path, log: Path) -> int:
    """Run the flow in a subprocess, SIGKILL it once a checkpoint >= KILL_AT is stored."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    argv = [sys.executable, "-c", RUN_FLOW, request.model_dump_json()]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while stored_step(training_root) < KILL_AT:
            assert proc.poll() is None, (
                f"the flow ended before the kill:\n{log.read_text()[-3000:]}"
            )
            assert time.monotonic() < deadline, f"no checkpoint stored:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return stored_step(training_root)


@pytest.mark.timeout(400)
def test_killed_retrain_resumes_from_the_stored_checkpoint(
    flow_env: FlowEnv, tmp_path: Path
) -> None:
    request = make_request(flow_env, tmp_path)
    training_root = flow_env.home / "store" / "training"  # the default store: file://<home>/store
    killed_at = kill_after_checkpoint(request, training_root, tmp_path / "killed.log")
    assert KILL_AT <= killed_at < STEPS
    assert killed_at % EVERY == 0
    assert versions(flow_env) == []  # nothing registered by the killed run
    (training_dir,) = training_root.iterdir()

    resumed = retrain_sam(request)
    assert resumed.resumed_from_step == killed_at  # not step 0
    assert resumed.training_url == training_dir.as_uri()
    assert logged_steps(training_dir) == list(range(1, STEPS + 1))  # each step once, to the end
    assert json.loads((training_dir / "result.json").read_text())["step"] == STEPS
    assert not (training_dir / "checkpoints" / "last.pt").exists()  # dropped once finished
    assert not resumed.promoted
    assert versions(flow_env) == [(resumed.candidate.name, "candidate")]

    # The same training uninterrupted: same loss curve and weights as the resumed one.
    reference = run_training(
        TrainConfig(
            data=request.data,
            model_name=request.model,
            output=tmp_path / "reference",
            max_steps=STEPS,
            images_per_batch=1,
            max_masks=1,
            lr=1e-3,
            seed=request.seed,
            checkpoint_every=1000,
            device="cpu",
            s3=S3Config(endpoint_url=flow_env.endpoint_url),
        )
    )
    stored = [json.loads(line)["loss"] for line in (training_dir / "metrics.jsonl").open()]
    assert stored == pytest.approx(reference.losses, abs=1e-6, rel=0)
    assert reference.weights is not None
    ours = torch.load(training_dir / "model.pt", weights_only=True)["model"]
    theirs = torch.load(reference.weights, weights_only=True)["model"]
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=1e-6)

    # A finished training is found by its key and reused, not run again.
    again = retrain_sam(request)
    assert again.resumed_from_step == STEPS
    assert again.sha256 == resumed.sha256
    assert again.training_url == resumed.training_url
    assert logged_steps(training_dir) == list(range(1, STEPS + 1))
    assert again.candidate.metrics == resumed.candidate.metrics
    assert again.candidate.name == resumed.candidate.name  # the same weights, registered once
    assert versions(flow_env) == [(resumed.candidate.name, "candidate")]
