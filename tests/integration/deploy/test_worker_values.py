"""deploy/k8s/worker-values.yaml: values of the official prefect-worker Helm chart."""

import copy
import json
from typing import Any

import jsonschema
import pytest

from tests.integration.deploy.deploy_checks import (
    DEPLOY,
    check_work_pool_template,
    load_yaml,
    upstream_schema,
)


def _with_template(values: dict[str, Any]) -> dict[str, Any]:
    """The values as Helm sees them after `--set-file ...configuration=base-job-template.json`."""
    values = copy.deepcopy(values)
    text = (DEPLOY / "k8s" / "base-job-template.json").read_text()
    values["worker"]["config"]["baseJobTemplate"]["configuration"] = text
    return values


def test_values_name_the_kubernetes_gpu_pool_and_a_self_hosted_server() -> None:
    values = load_yaml("k8s/worker-values.yaml")
    config = values["worker"]["config"]
    assert (config["workPool"], config["type"]) == ("autolabel-gpu", "kubernetes")
    assert values["worker"]["apiConfig"] == "selfHostedServer"
    assert values["worker"]["selfHostedServerApiConfig"]["apiUrl"].endswith("/api")
    template = json.loads(
        _with_template(values)["worker"]["config"]["baseJobTemplate"]["configuration"]
    )
    check_work_pool_template(template, "kubernetes")
    default_namespace = template["variables"]["properties"]["namespace"]["default"]
    assert config["jobNamespace"] == values["role"]["namespace"] == default_namespace


def test_values_fit_the_prefect_worker_chart_schema() -> None:
    schema = json.loads(upstream_schema("prefect-worker.values.schema.json").read_text())
    values = _with_template(load_yaml("k8s/worker-values.yaml"))
    jsonschema.Draft7Validator(schema).validate(values)
    misspelled = copy.deepcopy(values)
    misspelled["worker"]["config"]["workpool"] = misspelled["worker"]["config"].pop("workPool")
    with pytest.raises(jsonschema.ValidationError, match="workpool"):
        jsonschema.Draft7Validator(schema).validate(misspelled)
