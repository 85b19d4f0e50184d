"""Per-GPU slots on a real Prefect server: a host with N devices runs N shard runs at once, one per
device, and the next one waits for a device to be freed."""

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from autolabel.flows import resources
from autolabel.flows.resources import device_limit_name, device_slot

pytestmark = pytest.mark.integration


@pytest.fixture
def api(prefect_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Limit names carry the host name: a fresh one keeps this test's limits its own.
    host = f"host-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(resources.socket, "gethostname", lambda: host)
    with temporary_settings({PREFECT_API_URL: prefect_server}):
        yield prefect_server


def test_each_shard_run_holds_its_own_device_and_the_next_waits(api: str) -> None:
    devices = ["cuda:0", "cuda:1"]
    held: list[str] = []
    release = threading.Event()
    lock = threading.Lock()

    def shard_run() -> None:
        with device_slot(devices, try_seconds=1.0, pause_seconds=0.5) as device:
            with lock:
                held.append(device)
            release.wait(60)

    first = [threading.Thread(target=shard_run) for _ in devices]
    for thread in first:
        thread.start()
    deadline = time.monotonic() + 60
    while len(held) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(held) == devices, "two runs must hold the two devices at once"

    waiting = threading.Thread(target=shard_run)
    waiting.start()
    time.sleep(4)  # several rounds over both devices
    assert len(held) == 2, "a third run must wait while every device is held"
    release.set()
    for thread in [*first, waiting]:
        thread.join(60)
    assert len(held) == 3
    assert held[2] in devices


def test_the_cpu_takes_no_slot(api: str) -> None:
    with device_slot(["cpu"]) as first, device_slot(["cpu"]) as second:
        assert first == second == "cpu"
    assert device_limit_name("cuda:1").endswith("-cuda-1")
