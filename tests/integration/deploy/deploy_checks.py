"""Shared checks of the deploy/ manifests, each done by the tool that consumes the manifest.

- Work-pool base job templates: Prefect's own work-pool create validation
  (`WorkPoolCreate`'s `validate_base_job_template` and the API's
  `validate_job_variable_defaults_for_work_pool`), and rendering by the worker's own job
  configuration class (`from_template_and_values`, which uses `apply_values`).
- Kubernetes manifests: the Kubernetes OpenAPI schema bundled by `kubernetes-validate`, in strict
  mode (unknown fields are errors).
- Upstream schemas that cannot be installed from a package index (the Compose specification, the
  prefect-worker chart's values schema, the PyTorchJob CRD) are read from the folder named by
  DEPLOY_SCHEMAS; the tests that need them are skipped, naming the file, when it is not set.
"""

import asyncio
import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun
from prefect.server.api.validation import validate_job_variable_defaults_for_work_pool
from prefect.server.schemas.actions import WorkPoolCreate
from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSION = "1.33"
#: Prefect's Kubernetes worker insists on these two Job fields inside the pod spec
#: (`_get_base_job_manifest`), where the Kubernetes schema does not know them and the API server
#: drops them; our template also sets them on the Job spec, where they belong.
WORKER_REQUIRED_POD_FIELDS = ("completions", "parallelism")
SCHEMAS_VARIABLE = "DEPLOY_SCHEMAS"


def load_json(relative: str) -> dict[str, Any]:
    data = json.loads((DEPLOY / relative).read_text())
    assert isinstance(data, dict)
    return data


def load_yaml(relative: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / relative).read_text())
    assert isinstance(data, dict)
    return data


def upstream_schema(name: str) -> Path:
    """The upstream schema file `name` from the DEPLOY_SCHEMAS folder, else skip the test."""
    folder = os.environ.get(SCHEMAS_VARIABLE)
    if not folder:
        pytest.skip(f"{SCHEMAS_VARIABLE} is not set: needs {name} (see deploy/README.md)")
    path = Path(folder) / name
    if not path.is_file():
        pytest.skip(f"{path} does not exist (see deploy/README.md)")
    return path


def check_work_pool_template(template: dict[str, Any], pool_type: str) -> None:
    """Validate `template` as the Prefect server does when a work pool is created.

    Raises pydantic.ValidationError (template structure, undeclared placeholders) or
    fastapi.HTTPException (the variables schema, or a default that does not fit it).
    """
    WorkPoolCreate(name="autolabel-gpu", type=pool_type, base_job_template=template)
    # Only block references in defaults need the database session; ours have none.
    asyncio.run(
        validate_job_variable_defaults_for_work_pool(
            None,  # type: ignore[arg-type]
            "autolabel-gpu",
            template,
        )
    )


def variable_types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a variable's schema admits (`type` or the types of `anyOf`)."""
    if "anyOf" in schema:
        return set().union(*(variable_types(s) for s in schema["anyOf"]))
    if "$ref" in schema:
        return {schema["$ref"]}
    kind = schema.get("type", "any")
    return set(kind) if isinstance(kind, list) else {kind}


def compatibility_problems(
    ours: dict[str, Any], default: dict[str, Any], dropped: set[str]
) -> list[str]:
    """How `ours` fails to accept what the worker type's default template accepts.

    Every default variable but `dropped` must exist with the same JSON types, and every default
    job-configuration field but `dropped` must be templated.
    """
    problems = []
    ours_vars = ours["variables"]["properties"]
    for name, schema in default["variables"]["properties"].items():
        if name in dropped:
            continue
        if name not in ours_vars:
            problems.append(f"variable {name} is missing")
        elif variable_types(ours_vars[name]) != variable_types(schema):
            problems.append(f"variable {name}: {ours_vars[name]} instead of {schema}")
    missing_fields = set(default["job_configuration"]) - set(ours["job_configuration"]) - dropped
    problems += [f"job configuration field {f} is missing" for f in sorted(missing_fields)]
    return problems


def flow_run() -> FlowRun:
    return FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="brave-otter")


def render_kubernetes_job(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The Job manifest the Kubernetes worker would submit for a flow run with `values`.

    The client points at a closed port: rendering must need no Prefect API (no block or
    variable references).
    """

    async def configure() -> KubernetesWorkerJobConfiguration:
        async with PrefectClient(api="http://127.0.0.1:9/api") as client:
            return await KubernetesWorkerJobConfiguration.from_template_and_values(
                template, values, client=client
            )

    configuration = asyncio.run(configure())
    configuration.prepare_for_flow_run(flow_run())
    return configuration.job_manifest


def validate_kubernetes(manifest: dict[str, Any]) -> None:
    """Validate against the Kubernetes OpenAPI schema, unknown fields included (strict)."""
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def without_worker_pod_fields(job: dict[str, Any]) -> dict[str, Any]:
    job = copy.deepcopy(job)
    pod_spec = job["spec"]["template"]["spec"]
    for field in WORKER_REQUIRED_POD_FIELDS:
        pod_spec.pop(field)
    return job


def pod_template(pod: dict[str, Any]) -> dict[str, Any]:
    """A pod template spec wrapped as a `PodTemplate` object, which the schema can check."""
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": pod}
