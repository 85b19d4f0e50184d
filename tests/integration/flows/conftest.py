"""Fixtures for flow tests: a configured environment (PostgreSQL, moto S3, tiny random models)."""

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from autolabel.flows.settings import get_settings
from tests.conftest import PostgresDatabases

ROOT = Path(__file__).resolve().parents[3]
VOCAB = ROOT / "models" / "grounding_dino" / "bert-base-uncased" / "vocab.txt"


@dataclass(frozen=True)
class FlowEnv:
    """Where a flow test's data lives."""

    bucket: str
    endpoint_url: str
    database_url: str
    home: Path

    def s3(self):  # type: ignore[no-untyped-def]
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def upload_folder(self, folder: Path, prefix: str) -> int:
        client = self.s3()
        count = 0
        for path in sorted(folder.iterdir()):
            client.upload_file(str(path), self.bucket, f"{prefix}{path.name}")
            count += 1
        return count


@pytest.fixture
def flow_env(
    s3_bucket: str,
    s3_env: str,
    postgres_databases: PostgresDatabases,
    prefect_harness: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FlowEnv]:
    """AUTOLABEL_* pointing at a fresh PostgreSQL database (schema at head) and moto."""
    from autolabel.storage.db.engine import upgrade_to_head

    postgres_url = postgres_databases.create()
    for name in list(os.environ):
        if name.startswith("AUTOLABEL_") and name != "AUTOLABEL_S3__ENDPOINT_URL":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    (home / "weights" / "bert-base-uncased").mkdir(parents=True)
    shutil.copy(VOCAB, home / "weights" / "bert-base-uncased" / "vocab.txt")
    monkeypatch.setenv("AUTOLABEL_HOME", str(home))
    monkeypatch.setenv("AUTOLABEL_DATABASE__URL", postgres_url)
    monkeypatch.setenv("AUTOLABEL_MODELS__DEVICE", "cpu")
    upgrade_to_head(postgres_url)
    get_settings.cache_clear()
    yield FlowEnv(bucket=s3_bucket, endpoint_url=s3_env, database_url=postgres_url, home=home)
    get_settings.cache_clear()
