"""The installed package has the layout users import: `autolabel.models` is the folder `models/`."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"models", "storage", "tasks", "flows"}


def _declared_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def _package_folders() -> set[str]:
    found = set()
    for layer in LAYERS:
        for init in (ROOT / layer).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT)
            found.add(".".join(("autolabel", *relative.parts)))
    return found


def test_every_package_folder_is_declared() -> None:
    missing = _package_folders() - _declared_packages()
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_layers_import_under_autolabel() -> None:
    import autolabel.flows
    import autolabel.models
    import autolabel.storage
    import autolabel.tasks

    for module in (autolabel.models, autolabel.storage, autolabel.tasks, autolabel.flows):
        assert module.__file__ is not None
        layer = module.__name__.split(".")[1]
        assert Path(module.__file__).parent == ROOT / layer


@pytest.mark.integration
def test_wheel_contains_every_module(tmp_path: Path) -> None:
    """A regular (non-editable) install ships every module and data file of the four layers."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("autolabel-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "autolabel/" + str(path.relative_to(ROOT))
        for layer in LAYERS
        for path in (ROOT / layer).rglob("*")
        if path.suffix in {".py", ".ini", ".mako"} and "__pycache__" not in path.parts
    }
    assert expected - names == set()
