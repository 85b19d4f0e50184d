"""Evaluation runs on the configured device: retraining's `evaluate_weights` and `autolabel eval`.

Nothing here needs the device to exist: the model factory (or `evaluate_model`) is replaced by a
recorder that stops before any tensor is placed.
"""

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from autolabel.flows.cli import main
from autolabel.storage.config import S3Config
from autolabel.tasks.resources import ResourceConfig, Resources
from autolabel.tasks.training import evaluate, retrain
from autolabel.tasks.training.evaluate import EvalReport, EvalRequest
from autolabel.tasks.training.retrain import RetrainRequest


class BuiltError(Exception):
    """Raised by the fake factory once it has recorded its device."""


def resources_on(device: str, tmp_path: Path) -> Resources:
    return Resources(
        ResourceConfig(
            database_url=make_url("sqlite://"),
            s3=S3Config(),
            weights_dir=tmp_path / "weights",
            device=device,
            storage_url=(tmp_path / "store").as_uri(),
        )
    )


def test_evaluate_weights_builds_the_model_on_the_configured_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    def record(name: str, *, checkpoint_path: object, device: object, **kw: object) -> None:
        seen.update(name=name, checkpoint=checkpoint_path, device=str(device))
        raise BuiltError

    monkeypatch.setattr(retrain, "create_model", record)
    request = RetrainRequest(data="unused", holdout="unused", model="efficientvit-sam-test")
    with pytest.raises(BuiltError):
        retrain.evaluate_weights(request, None, resources_on("cuda:1", tmp_path))
    assert seen == {"name": "efficientvit-sam-test", "checkpoint": None, "device": "cuda:1"}


@pytest.mark.parametrize(
    ("configured", "flag", "expected"), [("cuda:1", None, "cuda:1"), ("cuda:1", "cpu", "cpu")]
)
def test_cli_eval_defaults_to_the_configured_device(
    configured: str,
    flag: str | None,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests: list[EvalRequest] = []

    def record(request: EvalRequest) -> EvalReport:
        requests.append(request)
        return EvalReport(metrics={"miou": 0.5}, images_used=1, skipped=[])

    monkeypatch.setattr(evaluate, "evaluate_model", record)  # `eval` imports it when run
    monkeypatch.setenv("AUTOLABEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AUTOLABEL_MODELS__DEVICE", configured)
    out = tmp_path / "metrics.json"
    argv = ["eval", "--data", str(tmp_path), "--model", "efficientvit-sam-test", "--json", str(out)]
    if flag is not None:
        argv += ["--device", flag]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    assert [r.device for r in requests] == [expected]
    assert json.loads(out.read_text())["miou"] == 0.5


@pytest.mark.parametrize(
    ("device", "world", "local", "cuda", "expected"),
    [
        ("cuda:1", 1, 0, True, "cuda:1"),  # a single process trains on the configured GPU
        ("cuda", 1, 0, True, "cuda:0"),
        ("auto", 1, 0, True, "cuda:0"),
        ("auto", 1, 0, False, "cpu"),
        ("cpu", 2, 1, True, "cpu"),
        ("cuda", 4, 3, True, "cuda:3"),  # under torchrun: one GPU per local rank
        ("cuda:1", 2, 1, True, "cuda:1"),
    ],
)
def test_training_runs_on_the_configured_device(
    device: str, world: int, local: int, cuda: bool, expected: str
) -> None:
    from autolabel.tasks.training.distributed import rank_device

    assert rank_device(device, world=world, local_rank=local, cuda_available=cuda) == expected
