"""The few Label Studio REST calls the tests make, as a reviewer's scripts would (legacy token).

Endpoints of Label Studio 1.23 (`/api/...`): projects, local-files storages, task import,
the task list with predictions, annotations, and the JSON export.
"""

from pathlib import Path
from typing import Any

import httpx

from tests.integration.review_tools.label_studio_server import TOKEN, LabelStudioServer


class LabelStudioApi:
    """An API client of one server."""

    def __init__(self, server: LabelStudioServer) -> None:
        self.server = server
        self.client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Token {TOKEN}"}, timeout=60
        )

    def close(self) -> None:
        self.client.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json()

    def create_project(self, title: str, label_config: str) -> int:
        """A project with this labeling interface; returns its id."""
        body = {"title": title, "label_config": label_config}
        return int(self._json("POST", "/api/projects/", json=body)["id"])

    def connect_local_files(self, project: int, folder: Path) -> None:
        """Connect `folder` (under the server's document root) as the project's local-files
        storage: Label Studio serves `/data/local-files/?d=...` only below such a storage."""
        body = {"project": project, "path": str(folder), "use_blob_urls": True, "title": "images"}
        self._json("POST", "/api/storages/localfiles/", json=body)

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """Import tasks (with predictions); returns Label Studio's counts."""
        result: dict[str, Any] = self._json("POST", f"/api/projects/{project}/import", json=tasks)
        return result

    def tasks(self, project: int) -> list[dict[str, Any]]:
        """The project's tasks with their predictions and annotations, as the editor loads them."""
        params = {"project": project, "fields": "all", "page_size": 1000}
        tasks: list[dict[str, Any]] = self._json("GET", "/api/tasks/", params=params)["tasks"]
        return tasks

    def annotate(self, task: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        """Submit an annotation of `task` (what the editor's Submit does)."""
        body = {"result": result, "was_cancelled": False, "ground_truth": False, "lead_time": 4.2}
        annotation: dict[str, Any] = self._json(
            "POST", f"/api/tasks/{task}/annotations/", json=body
        )
        return annotation

    def export_json(self, project: int) -> bytes:
        """The project's Export > JSON file (the annotated tasks), as downloaded."""
        path = f"/api/projects/{project}/export"
        response = self.client.get(path, params={"exportType": "JSON"})
        if response.status_code != 200:
            raise AssertionError(f"GET {path}: {response.status_code} {response.text[:500]}")
        return response.content

    def local_file(self, relative: str) -> bytes:
        """An image as the editor fetches it: `/data/local-files/?d=<relative>`."""
        response = self.client.get("/data/local-files/", params={"d": relative})
        if response.status_code != 200:
            raise AssertionError(f"local file {relative!r}: {response.status_code}")
        return response.content
