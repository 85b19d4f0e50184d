"""deploy/compose.yaml: the single-host stack, checked by Compose itself and by its schema."""

import copy
import json
import os
import shutil
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from tests.integration.deploy.deploy_checks import DEPLOY, load_yaml, upstream_schema

ENV = {"POSTGRES_PASSWORD": "pw", "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret"}


def _compose_config(path: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    return subprocess.run(
        [binary, "-f", path, "--profile", "gpu", "config"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_docker_compose_config_accepts_the_stack() -> None:
    done = _compose_config(str(DEPLOY / "compose.yaml"), ENV)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    gpu = config["services"]["gpu-worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"]
    missing = _compose_config(str(DEPLOY / "compose.yaml"), {})
    assert missing.returncode != 0
    assert "set POSTGRES_PASSWORD" in missing.stderr


def test_docker_compose_config_rejects_a_broken_copy(tmp_path: Any) -> None:
    broken = load_yaml("compose.yaml")
    broken["services"]["worker"]["depends_on"]["register"]["condition"] = "service_done"
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = _compose_config(str(path), ENV)
    assert done.returncode != 0
    assert "service_done" in done.stderr


def test_stack_starts_in_order() -> None:
    services = load_yaml("compose.yaml")["services"]
    for name in ("postgres", "prefect", "minio"):
        assert "healthcheck" in services[name], name
    assert services["prefect"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["register"]["command"] == ["sh", "deploy/register.sh"]
    for worker in ("worker", "gpu-worker"):
        needs = services[worker]["depends_on"]
        assert needs["register"]["condition"] == "service_completed_successfully"
        assert needs["bucket"]["condition"] == "service_completed_successfully"
    assert (
        "postgresql+asyncpg"
        in services["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    )


def test_stack_fits_the_compose_specification() -> None:
    schema = json.loads(upstream_schema("compose-spec.json").read_text())
    stack = load_yaml("compose.yaml")
    jsonschema.Draft7Validator(schema).validate(stack)
    broken = copy.deepcopy(stack)
    broken["services"]["gpu-worker"]["deploy"]["resources"]["reservations"]["gpus"] = "all"
    broken["services"]["gpu-worker"]["deploy"]["resources"]["reservations"]["device"] = []
    with pytest.raises(jsonschema.ValidationError, match="device"):
        jsonschema.Draft7Validator(schema).validate(broken)
