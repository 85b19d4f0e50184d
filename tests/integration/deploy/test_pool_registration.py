"""Against a real Prefect server on PostgreSQL: deploy/register.sh (the compose stack's
one-shot service), the Kubernetes and Docker work pools created from deploy/ with Prefect's CLI,
and the Docker template rendered by the Docker worker with its secrets from Secret blocks."""

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.models.containers import _create_container_args
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration

from tests.conftest import PostgresDatabases
from tests.integration.deploy.deploy_checks import (
    DEPLOY,
    ROOT,
    compatibility_problems,
    flow_run,
    load_json,
    load_yaml,
)

pytestmark = pytest.mark.integration
SECRETS = {
    "autolabel-database-password": ("AUTOLABEL_DATABASE__PASSWORD", "pg-secret"),
    "autolabel-aws-access-key-id": ("AWS_ACCESS_KEY_ID", "key-id"),
    "autolabel-aws-secret-access-key": ("AWS_SECRET_ACCESS_KEY", "key-secret"),
}


@pytest.fixture
def cli_env(prefect_server: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOLABEL_", "PREFECT_"))}
    bin_dir = str(Path(sys.executable).parent)
    return env | {
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PREFECT_API_URL": prefect_server,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "AUTOLABEL_HOME": str(tmp_path / "autolabel-home"),
    }


@pytest.fixture
def api(prefect_server: str) -> Iterator[str]:
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        yield prefect_server


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )


async def _pools_and_deployments() -> tuple[dict[str, str], set[str]]:
    async with get_client() as client:
        pools = {p.name: p.type for p in await client.read_work_pools()}
        deployments = {d.name for d in await client.read_deployments()}
    return pools, deployments


async def _clean_up(pools: list[str], deployments: frozenset[str] | set[str] = frozenset()) -> None:
    """Delete what a test registered (the server may be shared with other test files)."""
    async with get_client() as client:
        for deployment in await client.read_deployments():
            if deployment.name in deployments:
                await client.delete_deployment(deployment.id)
        for pool in pools:
            await client.delete_work_pool(pool)


def test_register_script_migrates_creates_pools_and_deploys_idempotently(
    api: str, cli_env: dict[str, str], postgres_databases: PostgresDatabases
) -> None:
    env = cli_env | {"AUTOLABEL_DATABASE__URL": postgres_databases.create()}
    expected = {d["name"] for d in load_yaml("prefect.yaml")["deployments"]}
    try:
        for attempt in (1, 2):
            done = _run(["sh", str(DEPLOY / "register.sh")], env)
            assert done.returncode == 0, f"attempt {attempt}:\n{done.stdout}\n{done.stderr}"
            pools, deployments = asyncio.run(_pools_and_deployments())
            assert pools["autolabel-cpu"] == pools["autolabel-gpu"] == "process"
            assert deployments == expected
        assert "work pool autolabel-gpu exists" in done.stdout
        status = _run(["autolabel", "db", "status"], env)
        assert status.returncode == 0, status.stderr
    finally:
        asyncio.run(_clean_up(["autolabel-cpu", "autolabel-gpu"], expected))


@pytest.mark.parametrize(("pool_type", "template"), [("kubernetes", "k8s"), ("docker", "docker")])
def test_prefect_cli_creates_the_pool_from_the_template(
    api: str, cli_env: dict[str, str], tmp_path: Path, pool_type: str, template: str
) -> None:
    name = f"autolabel-gpu-{template}-check"
    path = DEPLOY / template / "base-job-template.json"
    create = ["prefect", "work-pool", "create", name, "--type", pool_type]
    try:
        done = _run([*create, "--base-job-template", str(path)], cli_env)
        assert done.returncode == 0, done.stdout + done.stderr
        broken = tmp_path / "broken.json"
        broken.write_text(path.read_text().replace('"{{ image }}"', '"{{ container_image }}"'))
        refused = _run([*create, "--overwrite", "--base-job-template", str(broken)], cli_env)
        assert refused.returncode != 0
        assert "container_image" in refused.stdout + refused.stderr
    finally:
        asyncio.run(_clean_up([name]))


class _DockerEngine:
    """The one call the Docker worker makes while it builds a container's arguments."""

    def version(self) -> dict[str, str]:
        return {"Version": "28.2.2"}


def _render_docker(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    async def configure() -> DockerWorkerJobConfiguration:
        async with get_client() as client:
            return await DockerWorkerJobConfiguration.from_template_and_values(
                template, values, client=client
            )

    configuration = asyncio.run(configure())
    configuration.prepare_for_flow_run(flow_run())
    worker = DockerWorker(work_pool_name="autolabel-gpu")
    settings = worker._build_container_settings(_DockerEngine(), configuration)  # type: ignore[arg-type]
    # What docker-py's containers.create does with them, up to the API call.
    return dict(_create_container_args({**settings, "version": "1.47"}))


def test_docker_template_renders_gpu_containers_with_secrets_from_blocks(api: str) -> None:
    template = load_json("docker/base-job-template.json")
    dropped = {"container_create_kwargs", "registry_credentials"}
    assert (
        compatibility_problems(template, DockerWorker.get_default_base_job_template(), dropped)
        == []
    )
    for block, (_, value) in SECRETS.items():
        Secret(value=value).save(block, overwrite=True)
    deployment_env = {"env": {"AUTOLABEL_MODELS__DEVICE": "cuda:1"}, "gpu_count": 2}
    container = _render_docker(template, deployment_env)
    host = container["host_config"]
    (request,) = host["DeviceRequests"]
    assert (request["Count"], request["Capabilities"]) == (2, [["gpu"]])
    assert host["ShmSize"] == 2 * 1024**3
    assert host["NetworkMode"] == "autolabel"
    assert host["Binds"] == ["autolabel-weights:/weights"]
    environment = dict(container["environment"])
    for name, value in SECRETS.values():
        assert environment[name] == value
    assert environment["AUTOLABEL_MODELS__DEVICE"] == "cuda:1"
    assert environment["AUTOLABEL_STORAGE__URL"] == "s3://autolabel"
    broken = load_json("docker/base-job-template.json")
    kwargs = broken["job_configuration"]["container_create_kwargs"]
    kwargs["device_request"] = kwargs.pop("device_requests")
    with pytest.raises(TypeError, match="device_request"):
        _render_docker(broken, {})
