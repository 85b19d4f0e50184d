"""deploy/k8s/retrain-*.yaml: multi-GPU retraining as a torchrun Job and as a PyTorchJob."""

import copy
import shlex
from typing import Any

import jsonschema
import pytest
import yaml
from typer.main import get_command

from autolabel.flows.cli.app import app
from tests.integration.deploy.deploy_checks import (
    load_yaml,
    pod_template,
    upstream_schema,
    validate_kubernetes,
)


def _train_options() -> set[str]:
    command = get_command(app)
    train = command.commands["train"]  # type: ignore[attr-defined]
    return {opt for param in train.params for opt in param.opts}


def _check_train_command(args: list[str]) -> None:
    """`args` run `autolabel train` with options it has, output on the shared claim."""
    script = args.index("/venv/bin/autolabel")
    assert args[script + 1] == "train", shlex.join(args)
    options = [a for a in args[script + 2 :] if a.startswith("--")]
    assert set(options) <= _train_options(), set(options) - _train_options()
    output = args[args.index("--output") + 1]
    assert output.startswith("/checkpoints/")


def _check_pod(pod: dict[str, Any], gpus: int) -> list[str]:
    (container,) = pod["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims[mounts["/checkpoints"]] == "autolabel-checkpoints"
    for env in container["env"]:
        assert "value" not in env, f"{env['name']} must come from a Secret"
        assert "secretKeyRef" in env["valueFrom"]
    validate_kubernetes(pod_template(pod))
    return list(container["command"])


def test_torchrun_job_is_a_valid_kubernetes_job() -> None:
    job = load_yaml("k8s/retrain-torchrun-job.yaml")
    validate_kubernetes(job)
    args = _check_pod(job["spec"]["template"], gpus=8)
    assert args[:5] == ["torchrun", "--standalone", "--nproc-per-node", "8", "/venv/bin/autolabel"]
    _check_train_command(args)
    broken = copy.deepcopy(job)
    broken["spec"]["template"]["spec"]["containers"][0]["resources"]["limit"] = {}
    with pytest.raises(jsonschema.ValidationError, match="limit"):
        validate_kubernetes(broken)


def test_pytorchjob_replicas_run_torchrun_on_valid_pods() -> None:
    """The structure the training operator needs, and each replica's pod by the Kubernetes
    schema (always run; the CRD's own schema is checked below when available)."""
    job = load_yaml("k8s/retrain-pytorchjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"}
    assert specs["Master"]["replicas"] == 1
    for spec in specs.values():
        assert spec["restartPolicy"] == "OnFailure"
        assert spec["template"]["spec"]["containers"][0]["name"] == "pytorch"
        args = _check_pod(spec["template"], gpus=int(job["spec"]["nprocPerNode"]))
        # torchrun takes --nnodes, --node-rank, --nproc-per-node and the master's address from
        # the PET_* variables the operator sets: no rendezvous flags in the command.
        assert args[:2] == ["torchrun", "/venv/bin/autolabel"]
        _check_train_command(args)


def test_pytorchjob_fits_the_training_operator_crd() -> None:
    crd_path = upstream_schema("kubeflow.org_pytorchjobs.yaml")
    crd = yaml.safe_load(crd_path.read_text())
    assert crd["spec"]["names"]["kind"] == "PyTorchJob"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    job = load_yaml("k8s/retrain-pytorchjob.yaml")
    jsonschema.validate(job, schema)
    # The API server prunes fields a CRD does not declare: none of ours may be unknown.
    assert unknown_fields(job, schema) == []
    broken = copy.deepcopy(job)
    broken["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = "three"
    with pytest.raises(jsonschema.ValidationError, match="three"):
        jsonschema.validate(broken, schema)
    broken["spec"]["runPolicy"]["cleanupPolicy"] = "None"
    assert unknown_fields(broken, schema) == ["spec.runPolicy.cleanupPolicy"]


def unknown_fields(instance: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of `instance` fields that the structural schema does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(instance, list):
        items = schema.get("items", {})
        return [f for i, item in enumerate(instance) for f in unknown_fields(item, items, path)]
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return []
    properties = schema.get("properties")
    found = []
    for key, value in instance.items():
        where = f"{path}.{key}" if path else key
        if properties is not None and key in properties:
            found += unknown_fields(value, properties[key], where)
        elif isinstance(schema.get("additionalProperties"), dict):
            found += unknown_fields(value, schema["additionalProperties"], where)
        elif properties is not None:
            found.append(where)
    return found
