"""Fixtures of the tests against the real review tools (see tools.py and label_studio_server.py).

The data is `tests.unit.tasks.export.review_data`'s small dataset, stored in a fresh PostgreSQL
database: three images, four exported instances (one mask fitted to its image, one box clipped),
one rejected instance that no export may hold, and an image with no instance.
"""

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PostgresDatabases
from tests.integration.review_tools.label_studio_api import LabelStudioApi
from tests.integration.review_tools.label_studio_server import LabelStudioServer
from tests.integration.review_tools.tools import FORMATS, LABEL_STUDIO
from tests.unit.tasks.export.review_data import ReviewData, make_review_data


@pytest.fixture
def review_data(postgres_databases: PostgresDatabases, tmp_path: Path) -> ReviewData:
    """The review dataset on PostgreSQL, its images under `tmp_path/store/raw/`."""
    return make_review_data(tmp_path, database_url=postgres_databases.create())


@pytest.fixture
def formats_venv() -> None:
    """FiftyOne and datumaro are installed (see `tools.ToolVenv.require`)."""
    FORMATS.require()


@pytest.fixture(scope="session")
def label_studio_server() -> Iterator[LabelStudioServer]:
    """The session's Label Studio server (started by the session's process, see
    label_studio_server.py), or one of this process's own when there is none. Measured on 2
    cores beside the other tests: started from install.sh's migrated template it answers after
    9-15 s, which the session's early start mostly hides; from an empty data folder, ~60 s."""
    LABEL_STUDIO.require()
    server = LabelStudioServer.from_env()
    if server is not None:
        server.wait_ready()
        yield server
        return
    with tempfile.TemporaryDirectory(prefix="autolabel-label-studio-") as workdir:
        server = LabelStudioServer.start(Path(workdir))
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


@pytest.fixture
def label_studio(label_studio_server: LabelStudioServer) -> Iterator[LabelStudioApi]:
    """An API client of the session's Label Studio."""
    api = LabelStudioApi(label_studio_server)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def label_studio_data(
    label_studio_server: LabelStudioServer, postgres_databases: PostgresDatabases
) -> ReviewData:
    """The review dataset on PostgreSQL, its images under the server's local-files root (in a
    folder of this test's own: the server outlives the test, the folder is removed with it)."""
    folder = label_studio_server.files_root / uuid.uuid4().hex[:12]
    folder.mkdir()
    return make_review_data(folder, database_url=postgres_databases.create())
