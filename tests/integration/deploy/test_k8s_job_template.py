"""deploy/k8s/base-job-template.json: the Kubernetes work pool of GPU shard runs."""

import copy
from typing import Any

import jsonschema
import pydantic
import pytest
from fastapi import HTTPException
from prefect.utilities.schema_tools import ValidationError, validate
from prefect_kubernetes.worker import KubernetesWorker

from tests.integration.deploy.deploy_checks import (
    WORKER_REQUIRED_POD_FIELDS,
    check_work_pool_template,
    compatibility_problems,
    load_json,
    load_yaml,
    render_kubernetes_job,
    validate_kubernetes,
    without_worker_pod_fields,
)

SECRET_ENV = {
    "AUTOLABEL_DATABASE__PASSWORD": ("autolabel-database", "password"),
    "AWS_ACCESS_KEY_ID": ("autolabel-s3", "access-key-id"),
    "AWS_SECRET_ACCESS_KEY": ("autolabel-s3", "secret-access-key"),
}
SAMPLE = {
    "image": "registry.example.com/autolabel:gpu",
    "gpu_count": 2,
    "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    ],
    "env": {"AUTOLABEL_MODELS__DEVICE": "cuda"},
    "service_account_name": "autolabel-runner",
}


@pytest.fixture
def template() -> dict[str, Any]:
    return load_json("k8s/base-job-template.json")


def _container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_work_pool_creation_accepts_the_template(template: dict[str, Any]) -> None:
    check_work_pool_template(template, "kubernetes")


def test_work_pool_creation_rejects_broken_copies(template: dict[str, Any]) -> None:
    undeclared = copy.deepcopy(template)
    del undeclared["variables"]["properties"]["gpu_count"]
    with pytest.raises(pydantic.ValidationError, match="gpu_count"):
        check_work_pool_template(undeclared, "kubernetes")
    bad_default = copy.deepcopy(template)
    bad_default["variables"]["properties"]["gpu_count"]["default"] = "one"
    with pytest.raises(HTTPException, match="gpu_count"):
        check_work_pool_template(bad_default, "kubernetes")


def test_template_accepts_every_variable_of_the_default_kubernetes_template(
    template: dict[str, Any],
) -> None:
    default = KubernetesWorker.get_default_base_job_template()
    # cluster_config (a kubeconfig block for workers outside the cluster) is left out: the
    # Helm-installed worker runs inside the cluster.
    assert compatibility_problems(template, default, {"cluster_config"}) == []
    broken = copy.deepcopy(template)
    del broken["variables"]["properties"]["env"]
    broken["variables"]["properties"]["backoff_limit"]["type"] = "string"
    assert len(compatibility_problems(broken, default, {"cluster_config"})) == 2


def test_rendered_job_requests_gpus_and_schedules_on_gpu_nodes(template: dict[str, Any]) -> None:
    job = render_kubernetes_job(template, SAMPLE)
    container = _container(job)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert container["image"] == SAMPLE["image"]
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == SAMPLE["node_selector"]
    assert pod["tolerations"] == SAMPLE["tolerations"]
    assert pod["serviceAccountName"] == "autolabel-runner"
    assert job["metadata"]["namespace"] == "autolabel"
    defaults = render_kubernetes_job(template, {})
    assert defaults["spec"]["template"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.present": "true"
    }
    assert _container(defaults)["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "serviceAccountName" not in defaults["spec"]["template"]["spec"]


def test_secrets_come_from_kubernetes_secrets_only(template: dict[str, Any]) -> None:
    container = _container(render_kubernetes_job(template, SAMPLE))
    by_name = {e["name"]: e for e in container["env"]}
    for name, (secret, key) in SECRET_ENV.items():
        assert by_name[name]["valueFrom"]["secretKeyRef"] == {
            "name": secret,
            "key": key,
            "optional": name != "AUTOLABEL_DATABASE__PASSWORD",
        }
        assert "value" not in by_name[name]
    assert container["envFrom"] == [{"configMapRef": {"name": "autolabel-settings"}}]
    assert "AUTOLABEL_MODELS__DEVICE" in by_name  # the deployment's env still reaches the pod


def test_rendered_job_is_a_valid_kubernetes_job(template: dict[str, Any]) -> None:
    for values in ({}, SAMPLE):
        job = render_kubernetes_job(template, values)
        validate_kubernetes(without_worker_pod_fields(job))
        # Only the worker-required fields are forgiven: as rendered, strict validation fails
        # on exactly them.
        with pytest.raises(jsonschema.ValidationError) as raised:
            validate_kubernetes(job)
        assert all(f in raised.value.message for f in WORKER_REQUIRED_POD_FIELDS)


def test_the_validator_rejects_a_broken_template(template: dict[str, Any]) -> None:
    broken = copy.deepcopy(template)
    pod = broken["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    pod["nodeSelectors"] = pod.pop("nodeSelector")
    with pytest.raises(jsonschema.ValidationError, match="nodeSelectors"):
        validate_kubernetes(without_worker_pod_fields(render_kubernetes_job(broken, {})))
    bad_toleration = {**SAMPLE, "tolerations": [{"key": "a", "tolerationSeconds": "soon"}]}
    with pytest.raises(jsonschema.ValidationError, match="soon"):
        validate_kubernetes(
            without_worker_pod_fields(render_kubernetes_job(template, bad_toleration))
        )


def test_gpu_deployments_job_variables_fit_the_template(template: dict[str, Any]) -> None:
    """What the server checks when deploy/prefect.yaml's GPU deployments are registered."""
    deployments = load_yaml("prefect.yaml")["deployments"]
    gpu = [d for d in deployments if d["work_pool"]["name"] == "autolabel-gpu"]
    assert gpu, "expected deployments on the work pool autolabel-gpu"
    for deployment in gpu:
        job_variables = deployment["work_pool"].get("job_variables", {})
        validate(
            job_variables,
            template["variables"],
            raise_on_error=True,
            preprocess=True,
            ignore_required=True,
            allow_none_with_default=True,
        )
    with pytest.raises(ValidationError, match="gpu_count"):
        validate(
            {"gpu_count": "two"},
            template["variables"],
            raise_on_error=True,
            preprocess=True,
            ignore_required=True,
        )
